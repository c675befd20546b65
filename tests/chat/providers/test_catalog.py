"""The model catalog: names, resolution, listing from servers, the embedded default."""

from __future__ import annotations

import socket

import pytest

from chat.config import CredentialConfig, DispatchConfig, load_config, reset_config
from chat.providers import Catalog, ModelInfo, UnknownModel, get_catalog, reset_catalog
from chat.providers.anthropic import AnthropicProvider
from chat.providers.local import LocalProvider
from chat.providers.openai import OpenAIProvider
from chat.providers.sampling import EMBEDDED_SAMPLING, Sampling
from tests.chat.providers.sse_server import Reply, openai_models_reply

MODELS = "/v1/models"


def openai_models(*ids: str) -> Reply:
    return Reply(
        body={
            "object": "list",
            "data": [{"id": i, "object": "model", "created": 0, "owned_by": "x"} for i in ids],
        }
    )


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}/v1"


_made: list[Catalog] = []


@pytest.fixture(autouse=True)
async def close_catalogs():
    """Close the connections of every catalog a test made."""
    yield
    while _made:
        await _made.pop().aclose()


def catalog_of(*credentials: CredentialConfig, default_model: str | None = None) -> Catalog:
    _made.append(Catalog(DispatchConfig(credentials=credentials, default_model=default_model)))
    return _made[-1]


async def test_without_credentials_only_the_embedded_model_exists_and_is_the_default():
    catalog = Catalog(DispatchConfig())

    # The window comes from the bundled GGUF's header (SmolLM2 is trained on 8192 tokens).
    assert await catalog.models() == {"local/smollm2-135m-instruct": ModelInfo(8192)}
    assert catalog.default_model == "local/smollm2-135m-instruct"


async def test_a_configured_context_window_wins_for_a_local_model(tmp_path):
    catalog = catalog_of(
        CredentialConfig(
            name="mine",
            kind="local",
            path=str(tmp_path / "absent.gguf"),
            models=("m",),
            context_window=2048,
        )
    )

    assert await catalog.models() == {"mine/m": ModelInfo(2048)}


async def test_models_in_config_order_with_listed_ones_and_context_windows(server):
    server.script(MODELS, openai_models("qwen3-8b", "org/gemma"))
    catalog = catalog_of(
        CredentialConfig(
            name="oa",
            kind="openai",
            base_url="http://127.0.0.1:1/v1",
            models=("gpt-4o-mini",),
            context_window=128000,
        ),
        CredentialConfig(name="llama", kind="openai", base_url=server.url + "/v1"),
    )

    models = await catalog.models()

    assert list(models.items()) == [
        ("oa/gpt-4o-mini", ModelInfo(128000, vision=True)),  # a known vision model
        ("llama/qwen3-8b", ModelInfo(None)),
        ("llama/org/gemma", ModelInfo(None)),
    ]
    assert catalog.default_model == "oa/gpt-4o-mini"


async def test_windows_reported_by_a_listing_are_the_models_windows(server):
    server.script(
        MODELS,
        openai_models_reply(
            "vllm-model", "router-model", "plain",
            windows={"vllm-model": {"max_model_len": 32768},
                     "router-model": {"context_length": 8192}},
        ),
    )  # fmt: skip
    catalog = catalog_of(CredentialConfig(name="s", kind="openai", base_url=server.url + "/v1"))

    assert await catalog.models() == {
        "s/vllm-model": ModelInfo(32768),
        "s/router-model": ModelInfo(8192),
        "s/plain": ModelInfo(None),
    }
    assert (await catalog.resolve("s/router-model")).context_window == 8192


async def test_a_configured_window_wins_over_a_listed_one(server):
    server.script(MODELS, openai_models_reply("m", windows={"m": {"context_length": 4096}}))
    catalog = catalog_of(
        CredentialConfig(name="s", kind="openai", base_url=server.url + "/v1", context_window=100)
    )
    assert await catalog.models() == {"s/m": ModelInfo(100)}


async def test_a_credential_gives_its_answer_limit_and_sampling(server):
    catalog = catalog_of(
        CredentialConfig(
            name="s", kind="openai", base_url=server.url + "/v1", models=("m",),
            max_tokens=300, temperature=0.3, top_k=20,
        ),
        CredentialConfig(name="bundled", kind="local", temperature=0.7),
    )  # fmt: skip

    resolved = await catalog.resolve("s/m")
    bundled = await catalog.resolve("bundled/smollm2-135m-instruct")

    assert resolved.max_tokens == 300
    assert resolved.provider.sampling == Sampling(temperature=0.3, top_k=20)  # type: ignore[attr-defined]
    # The bundled model: its model card's sampling, under what the credential sets.
    assert isinstance(bundled.provider, LocalProvider)
    assert bundled.provider.sampling == Sampling(temperature=0.7, top_p=0.9, repeat_penalty=1.1)
    assert EMBEDDED_SAMPLING.temperature == 0.2


async def test_a_server_listing_is_asked_once_and_cached(server):
    server.script(MODELS, openai_models("a"))
    catalog = catalog_of(CredentialConfig(name="s", kind="openai", base_url=server.url + "/v1"))

    assert await catalog.models() == await catalog.models()
    assert list(await catalog.models()) == ["s/a"]
    assert len(server.requests) == 1
    assert catalog.default_model == "s/a"  # the first listed model


async def test_a_failed_listing_is_not_cached(server):
    server.script(MODELS, Reply(status=500, body={"error": {"message": "starting"}}))
    server.script(MODELS, openai_models("late"))
    catalog = catalog_of(CredentialConfig(name="s", kind="openai", base_url=server.url + "/v1"))

    assert await catalog.models() == {}
    assert catalog.default_model == ""
    assert list(await catalog.models()) == ["s/late"]


async def test_an_unreachable_server_contributes_nothing(server):
    server.script(MODELS, openai_models("b"))
    catalog = catalog_of(
        CredentialConfig(name="down", kind="openai", base_url=closed_port_url()),
        CredentialConfig(name="up", kind="openai", base_url=server.url + "/v1"),
    )

    assert list(await catalog.models()) == ["up/b"]
    # The model part of an unlistable credential is taken on trust; the provider will tell.
    resolved = await catalog.resolve("down/anything")
    assert resolved.provider_model == "anything"


async def test_resolve_splits_on_the_first_slash_and_reuses_providers(server):
    server.script(MODELS, openai_models("org/gemma-3"))
    catalog = catalog_of(
        CredentialConfig(
            name="llama", kind="openai", base_url=server.url + "/v1", context_window=8192
        ),
        CredentialConfig(name="claude", kind="anthropic", base_url=server.url, models=("c-1",)),
        default_model="claude/c-1",
    )

    resolved = await catalog.resolve("llama/org/gemma-3")
    again = await catalog.resolve("llama/org/gemma-3")
    claude = await catalog.resolve("claude/c-1")

    assert resolved.name == "llama/org/gemma-3"
    assert resolved.provider_model == "org/gemma-3"
    assert resolved.context_window == 8192
    assert isinstance(resolved.provider, OpenAIProvider)
    assert again.provider is resolved.provider
    assert isinstance(claude.provider, AnthropicProvider)
    assert catalog.default_model == "claude/c-1"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("gpt-4o-mini", "expected '<credential>/<model>'"),
        ("/gpt", "expected '<credential>/<model>'"),
        ("oa/", "expected '<credential>/<model>'"),
        ("nobody/gpt", "no credential named 'nobody' (credentials: oa, s)"),
        ("oa/gpt-5", "credential 'oa' has gpt-4o-mini, o3"),
        ("s/missing", "credential 's' has listed-1"),
    ],
)
async def test_unknown_models_raise_with_a_clear_message(server, name, message):
    server.script(MODELS, openai_models("listed-1"))
    catalog = catalog_of(
        CredentialConfig(
            name="oa", kind="openai", base_url=server.url + "/v1", models=("gpt-4o-mini", "o3")
        ),
        CredentialConfig(name="s", kind="openai", base_url=server.url + "/v1"),
    )

    with pytest.raises(UnknownModel) as caught:
        await catalog.resolve(name)

    assert str(caught.value) == f"unknown model {name!r}: {message}"


async def test_get_catalog_is_built_once_from_the_config(tmp_path, settings, server):
    path = tmp_path / "dispatch.toml"
    path.write_text(
        f'[[credentials]]\nname = "x"\nkind = "openai"\nbase_url = "{server.url}/v1"\n'
        'models = ["m1", "m2"]\n'
    )
    settings.DISPATCH_CONFIG = str(path)
    reset_config()
    reset_catalog()
    try:
        catalog = get_catalog()
        _made.append(catalog)
        assert get_catalog() is catalog
        assert list(await catalog.models()) == ["x/m1", "x/m2"]
        assert catalog.default_model == "x/m1"
    finally:
        reset_config()
        reset_catalog()


async def test_a_config_file_default_model_wins(tmp_path):
    path = tmp_path / "dispatch.toml"
    path.write_text(
        'default_model = "b/z"\n'
        '[[credentials]]\nname = "a"\nkind = "openai"\nmodels = ["y"]\n'
        '[[credentials]]\nname = "b"\nkind = "anthropic"\nmodels = ["z"]\n'
    )

    assert Catalog(load_config(path)).default_model == "b/z"


# ---------------------------------------------------------------- vision


async def test_vision_comes_from_the_config_then_the_listing_then_known_models(server):
    server.script(
        MODELS,
        Reply(
            body={
                "object": "list",
                "data": [
                    # The listing says: it wins over the name.
                    {"id": "gpt-4o", "object": "model", "capabilities": ["completion"]},
                    {"id": "my-model", "object": "model", "capabilities": ["vision"]},
                    # It does not say: the known models decide.
                    {"id": "llava-1.6", "object": "model"},
                    {"id": "qwen3-8b", "object": "model"},
                ],
            }
        ),
    )
    known = ("gpt-4o-mini", "gpt-3.5-turbo", "o3-mini", "o4-mini", "gpt-5", "Qwen2.5-VL-7B")
    catalog = catalog_of(
        CredentialConfig(name="oa", kind="openai", models=known),
        CredentialConfig(name="claude", kind="anthropic", models=("claude-sonnet-4-5",)),
        CredentialConfig(name="on", kind="openai", models=("plain",), vision=True),
        CredentialConfig(name="off", kind="anthropic", models=("claude-opus-4-1",), vision=False),
        CredentialConfig(name="some", kind="openai", models=("a", "b"), vision=("b",)),
        CredentialConfig(name="listed", kind="openai", base_url=server.url + "/v1"),
        CredentialConfig(name="local", kind="local", models=("m",), path="/nowhere.gguf"),
    )

    vision = {name: info.vision for name, info in (await catalog.models()).items()}

    assert vision == {
        "oa/gpt-4o-mini": True,
        "oa/gpt-3.5-turbo": False,
        "oa/o3-mini": False,
        "oa/o4-mini": True,
        "oa/gpt-5": True,
        "oa/Qwen2.5-VL-7B": True,
        "claude/claude-sonnet-4-5": True,
        "on/plain": True,
        "off/claude-opus-4-1": False,
        "some/a": False,
        "some/b": True,
        "listed/gpt-4o": False,
        "listed/my-model": True,
        "listed/llava-1.6": True,
        "listed/qwen3-8b": False,
        "local/m": False,
    }
    assert (await catalog.resolve("some/b")).vision is True
    assert (await catalog.resolve("listed/gpt-4o")).vision is False


async def test_the_embedded_model_has_no_vision():
    assert (await Catalog(DispatchConfig()).resolve("local/smollm2-135m-instruct")).vision is False

"""Plugins through entry points (docs/plugins.md): real distributions, pip-installed into a
directory on the path (tests/plugin_packages), loaded in-process and by a live worker."""

from __future__ import annotations

import json
import sys

import pytest
from websockets.sync.client import connect

from chat.config import ConfigError, CredentialConfig, ToolsConfig, load_config
from chat.plugins import NOT_LISTED, PluginError, Plugins, PluginTool
from chat.runtime import Finish, Message, ProviderRequest, TextDelta, ToolContext, UsageReport
from chat.tools import ToolRegistry
from tests.chat.live import COMPLETIONS, MODEL, start_stack
from tests.chat.providers.sse_server import openai_text_reply, openai_tool_reply
from tests.plugin_packages.install import install

ALLOWED = ["dispatch-echo-plugin", "Dispatch_Broken.Plugin"]  # names compare as packaging does


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory):
    """A directory holding the three test plugin distributions, installed by pip."""
    return install(tmp_path_factory.mktemp("plugins") / "site")


@pytest.fixture
def on_path(plugin_site, monkeypatch):
    """The plugin distributions on sys.path of this process, for one test."""
    monkeypatch.syspath_prepend(str(plugin_site))
    yield plugin_site


# ---------------------------------------------------------------- loading (in-process)


def states(plugins: Plugins) -> dict[tuple[str, str], str]:
    return {(entry["name"], entry["kind"]): entry["state"] for entry in plugins.state()}


def test_allowed_plugins_load_and_each_failure_disables_only_its_plugin(on_path):
    plugins = Plugins(ALLOWED)

    found = states(plugins)
    assert found == {
        ("echo", "tools plugin"): "ready",
        ("echo", "provider plugin"): "ready",
        ("fragile", "provider plugin"): "ready",
        ("misbehaving", "tools plugin"): "ready",
        ("takes_builtin", "tools plugin"): "ready",
        ("import_error", "tools plugin"): (
            "error: ImportError: a dependency of the plugin is missing"
        ),
        ("missing", "tools plugin"): (
            "error: AttributeError: module 'dispatch_broken_plugin' has no attribute "
            "'no_such_function'"
        ),
        ("not_callable", "tools plugin"): (
            "error: dispatch_broken_plugin:NOT_A_FUNCTION is not a function returning tools"
        ),
        ("raises", "tools plugin"): "error: RuntimeError: the plugin's own bug",
        ("not_a_tool", "tools plugin"): (
            "error: str is not a tool: its spec must be a chat.runtime.ToolSpec"
        ),
        ("bad_name", "tools plugin"): (
            "error: tool name 'has spaces' must be 1-64 letters, digits, '_' or '-'"
        ),
        ("bad_schema", "tools plugin"): (
            "error: tool 'bad_schema': parameters must be a JSON schema of type 'object'"
        ),
        ("sync_run", "tools plugin"): "error: tool 'sync_run': run must be an async method",
        ("twin_a", "tools plugin"): (
            "error: tool 'twin' is also provided by dispatch-broken-plugin (twin_b)"
        ),
        ("twin_b", "tools plugin"): (
            "error: tool 'twin' is also provided by dispatch-broken-plugin (twin_a)"
        ),
        ("openai", "provider plugin"): "error: kind 'openai' is built in",
        ("unlisted", "tools plugin"): NOT_LISTED,
    }
    assert sorted(plugins.tools()) == ["echo", "misbehave", "read_file"]
    assert all(isinstance(tool, PluginTool) for tool in plugins.tools().values())


def test_a_plugin_that_is_not_listed_is_never_imported(on_path):
    plugins = Plugins(["dispatch-echo-plugin"])

    assert states(plugins)[("unlisted", "tools plugin")] == NOT_LISTED
    assert states(plugins)[("fragile", "provider plugin")] == NOT_LISTED
    assert "dispatch_unlisted_plugin" not in sys.modules  # importing it raises
    assert list(plugins.tools()) == ["echo"]
    assert all(entry["state"] == NOT_LISTED for entry in Plugins([]).state())


def test_a_plugin_tool_never_takes_a_built_in_name(on_path):
    registry = ToolRegistry(ToolsConfig(), (), Plugins(ALLOWED))

    tools = registry.tools()
    assert type(tools["read_file"]).__name__ == "ReadFile"  # the built-in, not the plugin's
    assert {"echo", "misbehave"} <= set(tools)
    entries = {(e["name"], e["source"]): e["state"] for e in registry.state()}
    assert entries[("read_file", "builtin")] == "ready"
    assert entries[("read_file", "dispatch-broken-plugin")] == (
        "error: the name of a built-in tool"
    )
    assert entries[("echo", "dispatch-echo-plugin")] == "ready"
    assert entries[("echo (tools plugin)", "dispatch-echo-plugin")] == "ready"


async def test_a_plugin_tool_that_raises_or_returns_nonsense_gives_an_error_result(on_path):
    misbehave = Plugins(ALLOWED).tools()["misbehave"]
    ctx = ToolContext("/tmp", emit_output=None)

    raised = await misbehave.run({"how": "raise"}, ctx)
    returned = await misbehave.run({}, ctx)

    assert raised.is_error and raised.content == (
        "misbehave failed (plugin dispatch-broken-plugin): ValueError: misbehaved"
    )
    assert returned.is_error and returned.content == (
        "misbehave (plugin dispatch-broken-plugin) returned str, not a ToolOutcome"
    )


async def test_a_provider_plugin_serves_its_kind_and_a_failing_one_is_disabled(on_path):
    plugins = Plugins(ALLOWED)
    echo = CredentialConfig(name="e", kind="echo", models=("m",), options={"greeting": "hi"})
    fragile = CredentialConfig(name="f", kind="fragile", models=("m",))

    provider = plugins.provider(echo)
    request = ProviderRequest("m", [Message("user", [{"type": "text", "text": "ping"}])])
    events = [event async for event in provider.stream(request)]

    assert [e.text for e in events if isinstance(e, TextDelta)] == ["hi: ", "ping"]
    assert isinstance(events[-2], UsageReport) and events[-1] == Finish("stop")
    with pytest.raises(PluginError, match="cannot reach the service for f"):
        plugins.provider(fragile)
    assert states(plugins)[("fragile", "provider plugin")] == (
        "error: credential 'f': RuntimeError: cannot reach the service for f"
    )
    with pytest.raises(PluginError, match="is disabled"):  # not called again
        plugins.provider(fragile)


# ---------------------------------------------------------------- the config


def write(tmp_path, text: str):
    path = tmp_path / "dispatch.toml"
    path.write_text(text)
    return path


def test_a_plugin_kind_is_a_credential_kind_once_its_plugin_is_listed(on_path, tmp_path):
    credential = '[[credentials]]\nname = "e"\nkind = "echo"\noptions = { greeting = "yo" }\n'
    allowed = load_config(write(tmp_path, 'plugins = ["dispatch-echo-plugin"]\n' + credential))
    assert allowed.credentials[0].options == {"greeting": "yo"}

    path = write(tmp_path, "# not listed\n" + credential)
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert str(refused.value) == (
        f"{path}, line 4: kind 'echo' comes from the plugin 'dispatch-echo-plugin', which "
        "plugins does not list (add it: plugins = ['dispatch-echo-plugin'])"
    )

    path = write(tmp_path, '[[credentials]]\nname = "g"\nkind = "gemini"\n')
    with pytest.raises(ConfigError) as unknown:
        load_config(path)
    assert str(unknown.value) == (
        f"{path}, line 3: unknown kind 'gemini' "
        "(expected one of: openai, anthropic, local, echo, fragile)"
    )

    path = write(tmp_path, '[[credentials]]\nname = "o"\nkind = "openai"\noptions = {}\n')
    with pytest.raises(ConfigError, match="options is not allowed for a credential of kind"):
        load_config(path)
    path = write(tmp_path, 'plugins = "dispatch-echo-plugin"\n')
    with pytest.raises(ConfigError, match="line 1: plugins must be an array of strings"):
        load_config(path)


# ---------------------------------------------------------------- a live worker

LIVE_TOP = 'plugins = ["dispatch-echo-plugin", "dispatch-broken-plugin"]'
LIVE_CREDENTIALS = """
[[credentials]]
name = "echo"
kind = "echo"
models = ["parrot"]
options = { greeting = "parrot says" }

[[credentials]]
name = "fragile"
kind = "fragile"
models = ["x"]
"""


@pytest.fixture(scope="module")
def stack(plugin_site):
    yield from start_stack(
        {"PYTHONPATH": str(plugin_site)}, config_top=LIVE_TOP, config_extra=LIVE_CREDENTIALS
    )


def test_a_turn_uses_a_plugin_tool(stack):
    stack.scripted.script(
        COMPLETIONS,
        openai_tool_reply(
            [("c1", "echo", {"text": "ping"}), ("c2", "misbehave", {"how": "raise"})]
        ),
        openai_text_reply("done"),
    )
    with stack.client() as client:
        response = client.post("/chat", json={"message": "use the plugin", "model": MODEL})
    events = [json.loads(line) for line in response.text.splitlines()]

    results = {e["toolName"]: e for e in events if e["type"] == "tool-result"}
    assert results["echo"]["isError"] is False
    assert results["echo"]["content"].startswith("echo: ping (in ")
    assert results["misbehave"]["isError"] is True
    assert "ValueError: misbehaved" in results["misbehave"]["content"]
    assert events[-2]["reason"] == "stop"
    offered = [t["function"]["name"] for t in stack.scripted.requests[-2].body["tools"]]
    assert {"echo", "misbehave", "read_file"} <= set(offered)
    assert not {"twin", "unlisted", "has spaces", "sync_run"} & set(offered)
    assert offered.count("read_file") == 1


def test_a_plugin_provider_is_in_the_catalog_and_answers_a_turn(stack):
    with stack.client() as client:
        models = client.get("/models").json()["models"]
        assert "echo/parrot" in models and MODEL in models
        assert "fragile/x" not in models  # its plugin fails: no model offered

        response = client.post("/chat", json={"message": "hello plugin", "model": "echo/parrot"})
    events = [json.loads(line) for line in response.text.splitlines()]
    text = "".join(e["delta"] for e in events if e["type"] == "text-delta")
    assert text == "parrot says: hello plugin"
    assert events[-2]["reason"] == "stop"


def test_a_failing_plugin_is_refused_with_its_reason_and_the_server_stays_up(stack):
    with stack.client() as client:
        for _ in range(2):  # the first try fails the plugin, the second finds it disabled
            refused = client.post("/chat", json={"message": "hi", "model": "fragile/x"})
            assert refused.status_code == 400
            error = refused.json()["error"]
            assert error.startswith("model 'fragile/x' is unavailable: plugin dispatch-broken")
            assert "RuntimeError: cannot reach the service for fragile" in error
        assert client.get("/health").json()["ok"] is True


def test_the_tools_surface_shows_plugins_their_tools_and_reasons(stack):
    with stack.client() as client:
        client.get("/models")  # makes the providers: the fragile one fails
    with connect(stack.ws_url(), open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "catalog"
        ws.send(json.dumps({"type": "subscribe", "surfaceId": "tools"}))
        spec = json.loads(ws.recv(timeout=10))["spec"]
    fields = {field["label"]: field["value"] for field in spec["fields"]}

    assert fields["echo (tools plugin)"] == "ready"
    assert fields["echo (provider plugin)"] == "ready"
    assert fields["echo"] == "ready"
    assert fields["misbehave"] == "ready"
    assert fields["import_error (tools plugin)"] == (
        "error: ImportError: a dependency of the plugin is missing"
    )
    assert fields["unlisted (tools plugin)"] == NOT_LISTED
    assert fields["fragile (provider plugin)"].startswith("error: credential 'fragile'")
    assert all(isinstance(value, str) for value in fields.values())

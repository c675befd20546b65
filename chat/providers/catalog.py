"""The model catalog: which ``<credential>/<model>`` names exist and which provider serves each.

Built once per process from the config. Providers are created lazily, once per credential,
and reused; a credential without a ``models`` list asks its server once (a failed listing is
not cached, so the server is asked again next time). A credential of a plugin's kind gets its
provider from the plugin (chat.plugins); while the plugin fails, its models are not listed
and asking for one says why.

Whether a model sees images (``vision``) comes, in order, from the credential's ``vision`` key
(true/false, or the names of its models that do), from the server's listing when it says, and
else from the models known to (``known_vision``). The embedded model has no vision.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import httpx

from chat.config import EMBEDDED_CREDENTIAL, KINDS, CredentialConfig, DispatchConfig, get_config
from chat.plugins import PluginError, get_plugins
from chat.providers.sampling import EMBEDDED_SAMPLING, Sampling
from chat.providers.streaming import ListedModel
from chat.runtime.types import Provider, ProviderError

logger = logging.getLogger(__name__)


class UnknownModel(Exception):
    """The model name names no credential, or a model the credential does not have."""


@dataclass(frozen=True)
class ModelInfo:
    context_window: int | None
    # The credential passes a reasoning effort (``reasoning_effort = true``): the web app
    # offers its Effort control only then.
    reasoning: bool = False
    vision: bool = False


@dataclass(frozen=True)
class ResolvedModel:
    name: str  # "<credential>/<model>"
    provider: Provider
    provider_model: str  # the part after the first "/"
    context_window: int | None
    kind: str = ""  # the credential's kind: openai, anthropic, local or a plugin's
    vision: bool = False
    max_tokens: int | None = None  # the credential's limit on an answer


@runtime_checkable
class _ListingProvider(Protocol):
    # The built-in providers list ListedModels; a plugin's may list plain ids.
    async def list_models(self) -> Sequence[ListedModel | str]: ...


# Model names (the part after the last "/", lower case) of families known to take images.
OPENAI_VISION_PREFIXES = (
    "gpt-4o",
    "chatgpt-4o",
    "gpt-4.1",
    "gpt-4.5",
    "gpt-4-turbo",
    "gpt-4-vision",
    "gpt-5",
    "o1",
    "o3",
    "o4",
)
OPENAI_TEXT_ONLY_PREFIXES = ("o1-mini", "o1-preview", "o3-mini", "gpt-4o-audio", "gpt-4o-realtime")
# Open models whose names say they take images (llama.cpp, vLLM, Ollama, LM Studio …).
VISION_NAME_MARKERS = ("vision", "-vl", "_vl", "llava", "pixtral")


def known_vision(kind: str, model: str) -> bool:
    """Whether a model of that kind and name is known to take images.

    Anthropic: every Claude model since Claude 3. OpenAI-compatible: OpenAI's vision families
    (GPT-4o, 4.1, 4.5, 5, o1, o3, o4-mini, not the -mini reasoning models before o4) and open
    models named for it (``…-vision``, ``…-VL``, LLaVA, Pixtral). Anything else: no vision
    unless the credential's ``vision`` says so.
    """
    name = model.lower().rsplit("/", 1)[-1].rsplit(":", 1)[0]
    if kind == "anthropic":
        return not name.startswith(("claude-2", "claude-instant"))
    if kind != "openai":
        return False
    if name.startswith(OPENAI_TEXT_ONLY_PREFIXES):
        return False
    return name.startswith(OPENAI_VISION_PREFIXES) or any(m in name for m in VISION_NAME_MARKERS)


class Catalog:
    """The credentials of one config and the models they offer."""

    def __init__(self, config: DispatchConfig):
        # No credential at all: the embedded model is the whole catalog.
        self._credentials = {c.name: c for c in config.credentials or (EMBEDDED_CREDENTIAL,)}
        self._configured_default = config.default_model
        self._providers: dict[str, Provider] = {}
        self._listed: dict[str, tuple[str, ...]] = {}  # successful server listings
        self._listed_vision: dict[str, dict[str, bool]] = {}  # what those listings said
        self._listed_window: dict[str, dict[str, int]] = {}  # the windows they reported

    @property
    def default_model(self) -> str:
        """The config's ``default_model``, else the first model known so far."""
        if self._configured_default:
            return self._configured_default
        for credential in self._credentials.values():
            models = self._known_models(credential)
            if models:
                return f"{credential.name}/{models[0]}"
        return ""

    async def models(self) -> dict[str, ModelInfo]:
        """Every model, in config order; an unreachable server contributes nothing."""
        out: dict[str, ModelInfo] = {}
        for credential in self._credentials.values():
            try:
                models = await self._models_of(credential) or ()
                if credential.kind not in KINDS:
                    self._provider(credential)  # a failing plugin offers no model
            except PluginError as exc:
                logger.warning("credential %r: %s", credential.name, exc)
                continue
            for model in models:
                out[f"{credential.name}/{model}"] = ModelInfo(
                    self._context_window(credential, model),
                    credential.reasoning_effort,
                    self.vision(credential, model),
                )
        return out

    def vision(self, credential: CredentialConfig, model: str) -> bool:
        """Whether the credential's model takes images (see the module's docstring)."""
        if isinstance(credential.vision, bool):
            return credential.vision
        if credential.vision is not None:
            return model in credential.vision
        listed = self._listed_vision.get(credential.name, {}).get(model)
        return listed if listed is not None else known_vision(credential.kind, model)

    async def resolve(self, name: str) -> ResolvedModel:
        """Find the provider for ``<credential>/<model>``; raises UnknownModel."""
        credential_name, slash, model = name.partition("/")
        if not slash or not credential_name or not model:
            raise UnknownModel(f"unknown model {name!r}: expected '<credential>/<model>'")
        credential = self._credentials.get(credential_name)
        if credential is None:
            raise UnknownModel(
                f"unknown model {name!r}: no credential named {credential_name!r} "
                f"(credentials: {', '.join(self._credentials)})"
            )
        try:
            models = await self._models_of(credential)
            # An unlistable server gets the benefit of the doubt: the provider will say more.
            if models is not None and model not in models:
                raise UnknownModel(
                    f"unknown model {name!r}: credential {credential_name!r} has "
                    f"{', '.join(models) if models else 'no models'}"
                )
            provider = self._provider(credential)
        except PluginError as exc:
            raise UnknownModel(f"model {name!r} is unavailable: {exc}") from exc
        return ResolvedModel(
            name,
            provider,
            model,
            self._context_window(credential, model),
            credential.kind,
            self.vision(credential, model),
            credential.max_tokens,
        )

    def _context_window(self, credential: CredentialConfig, model: str) -> int | None:
        """The configured window; else what the server's model listing reported
        (``context_length``, ``max_model_len`` …); a local model knows its own from the GGUF."""
        if credential.context_window is not None:
            return credential.context_window
        if credential.kind != "local":
            return self._listed_window.get(credential.name, {}).get(model)
        try:
            window = getattr(self._provider(credential), "context_window", None)
        except (ImportError, OSError, ValueError) as exc:
            logger.warning("no context window for credential %r: %s", credential.name, exc)
            return None
        return window if isinstance(window, int) else None

    def _known_models(self, credential: CredentialConfig) -> tuple[str, ...]:
        return credential.models or self._listed.get(credential.name, ())

    async def _models_of(self, credential: CredentialConfig) -> tuple[str, ...] | None:
        """The credential's models; None when the server cannot say right now."""
        if credential.models is not None:
            return credential.models
        if credential.name in self._listed:
            return self._listed[credential.name]
        provider = self._provider(credential)
        if not isinstance(provider, _ListingProvider):
            return None
        try:
            listed = [
                m if isinstance(m, ListedModel) else ListedModel(str(m))
                for m in await provider.list_models()
            ]
        except ProviderError as exc:
            logger.warning("cannot list the models of credential %r: %s", credential.name, exc)
            return None
        self._listed_vision[credential.name] = {
            m.id: m.vision for m in listed if m.vision is not None
        }
        self._listed_window[credential.name] = {
            m.id: m.window for m in listed if m.window is not None
        }
        models = self._listed[credential.name] = tuple(m.id for m in listed)
        return models

    async def aclose(self) -> None:
        """Close the providers' connections opened from the running event loop."""
        for provider in self._providers.values():
            close = getattr(provider, "aclose", None)
            if close is not None:
                await close()

    def _provider(self, credential: CredentialConfig) -> Provider:
        if credential.name not in self._providers:
            self._providers[credential.name] = _make_provider(credential)
        return self._providers[credential.name]


def _options(credential: CredentialConfig) -> dict[str, Any]:
    """What every SDK provider takes from its credential: the sampling, and the timeout
    (``read_timeout`` bounds how long a stream may stall between bytes)."""
    options: dict[str, Any] = {"sampling": Sampling.of(credential)}
    if credential.read_timeout is not None:  # else the provider's default
        options["timeout"] = httpx.Timeout(credential.read_timeout, connect=10.0)
    return options


def _make_provider(credential: CredentialConfig) -> Provider:
    if credential.kind not in KINDS:
        return get_plugins().provider(credential)  # PluginError when the plugin fails
    # Each kind's module is imported when a credential of that kind is first used: the SDKs
    # take seconds to import and llama.cpp loads a native library (chat.startup imports the
    # SDKs at process start, before any event loop runs).
    if credential.kind == "openai":
        from chat.providers.openai import OpenAIProvider

        assert credential.base_url is not None  # the config defaults it
        return OpenAIProvider(
            base_url=credential.base_url,
            # Keyless servers (llama.cpp …) need no key, but the SDK insists on one.
            api_key=os.environ.get(credential.api_key_env or "OPENAI_API_KEY") or "not-set",
            send_reasoning_effort=credential.reasoning_effort,
            **_options(credential),
        )
    if credential.kind == "anthropic":
        from chat.providers.anthropic import AnthropicProvider

        return AnthropicProvider(
            base_url=credential.base_url,
            # No api_key_env: the SDK finds its credentials itself (ANTHROPIC_API_KEY …).
            api_key=(os.environ.get(credential.api_key_env) or "not-set")
            if credential.api_key_env
            else None,
            thinking=credential.reasoning_effort,
            **_options(credential),
        )
    # kind == "local": imported only now, loading llama.cpp is expensive.
    from chat.providers.local import LocalProvider, default_model_path

    sampling = Sampling.of(credential)
    if credential.path is None:  # the bundled SmolLM2: its model card's defaults
        sampling = sampling.over(EMBEDDED_SAMPLING)
    return LocalProvider(
        credential.path or default_model_path(),
        context_window=credential.context_window,
        sampling=sampling,
    )


_catalog: Catalog | None = None


def get_catalog() -> Catalog:
    """The process-wide catalog, built from get_config() on first use."""
    global _catalog
    if _catalog is None:
        _catalog = Catalog(get_config())
    return _catalog


def reset_catalog() -> None:
    """Forget the process-wide catalog (tests that change the config)."""
    global _catalog
    _catalog = None

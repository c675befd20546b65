"""Plugins: tools and provider kinds that installed packages contribute through Python entry
points (docs/plugins.md).

A distribution declares entry points in two groups:

- ``dispatch.tools``: a function taking no arguments that returns the plugin's tools (a tool
  or a list of them; a tool is what ``chat.runtime.Tool`` describes);
- ``dispatch.providers``: the entry point's name is a credential ``kind``; it names a function
  that takes the credential's ``CredentialConfig`` and returns a ``chat.runtime.Provider``.

Only distributions that the config's ``plugins`` lists are imported; the others are listed as
disabled. A plugin that fails — it cannot be imported, its function raises or returns
something that is not a tool, a tool's spec would break every provider request, a kind or a
tool name is taken — is disabled with its reason: logged, and shown in the ``tools`` surface.
The server goes on without it. A plugin tool that raises or returns a wrong value gives an
error result, like any tool.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from chat.runtime.types import Provider, Tool, ToolContext, ToolOutcome, ToolSpec

log = logging.getLogger(__name__)

TOOLS_GROUP = "dispatch.tools"
PROVIDERS_GROUP = "dispatch.providers"
BUILTIN_KINDS = ("openai", "anthropic", "local")
READY = "ready"
NOT_LISTED = "disabled: not in the config's plugins"
# What the OpenAI and Anthropic APIs accept as a function name.
TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


class PluginError(Exception):
    """A provider plugin cannot serve a credential; the message says which and why."""


def normalize(name: str) -> str:
    """A distribution name as packaging compares them (PEP 503): ``Dispatch_Echo`` is
    ``dispatch-echo``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _distribution(entry: EntryPoint) -> str:
    return entry.dist.name if entry.dist is not None else ""


def installed_provider_kinds() -> dict[str, str]:
    """Every provider kind an installed distribution declares, allowed or not: kind →
    distribution (the first one found, when two declare a kind). Reads metadata only."""
    kinds: dict[str, str] = {}
    for entry in entry_points(group=PROVIDERS_GROUP):
        if entry.name not in BUILTIN_KINDS:
            kinds.setdefault(entry.name, _distribution(entry))
    return kinds


@dataclass
class Plugin:
    """One entry point of one distribution, and what became of it."""

    group: str  # TOOLS_GROUP or PROVIDERS_GROUP
    name: str  # the entry point's name; for a provider plugin, the credential kind
    distribution: str
    state: str = READY  # ready, "disabled: …" or "error: …"
    tools: dict[str, Tool] = field(default_factory=dict)
    factory: Callable[[Any], Any] | None = None

    def fail(self, reason: str) -> None:
        self.state = f"error: {reason}"
        log.error("plugin %s (%s, %s): %s", self.name, self.distribution, self.group, reason)


class Plugins:
    """The installed plugins, loaded when their distribution is allowed."""

    def __init__(self, allowed: Collection[str], found: Iterable[EntryPoint] | None = None) -> None:
        self.allowed = tuple(allowed)
        permitted = {normalize(name) for name in allowed}
        if found is None:
            found = [*entry_points(group=TOOLS_GROUP), *entry_points(group=PROVIDERS_GROUP)]
        self.plugins: list[Plugin] = []
        for entry in found:
            plugin = Plugin(entry.group, entry.name, _distribution(entry))
            self.plugins.append(plugin)
            if normalize(plugin.distribution) not in permitted:
                plugin.state = NOT_LISTED
            elif entry.group == PROVIDERS_GROUP:
                if entry.name in BUILTIN_KINDS:
                    plugin.fail(f"kind {entry.name!r} is built in")
                else:
                    self._load_provider(plugin, entry)
            else:
                self._load_tools(plugin, entry)
        # A kind or a tool name two plugins claim is neither's: which one would win depends
        # on the order packages happen to be found in.
        providers = [p for p in self.plugins if p.group == PROVIDERS_GROUP and p.state == READY]
        _refuse_twins(providers, lambda plugin: [plugin.name], "kind")
        tools = [p for p in self.plugins if p.group == TOOLS_GROUP and p.state == READY]
        _refuse_twins(tools, lambda plugin: list(plugin.tools), "tool")
        self._kinds = {p.name: p for p in providers if p.state == READY}

    # ------------------------------------------------------------------ tools

    def tools(self) -> dict[str, Tool]:
        """The tools of every ready tool plugin, by name, in discovery order."""
        tools: dict[str, Tool] = {}
        for plugin in self.plugins:
            if plugin.group == TOOLS_GROUP and plugin.state == READY:
                for name, tool in plugin.tools.items():
                    tools.setdefault(name, tool)
        return tools

    def _load_tools(self, plugin: Plugin, entry: EntryPoint) -> None:
        try:
            function = entry.load()
            if not callable(function):
                raise _Refused(f"{entry.value} is not a function returning tools")
            made = function()
            tools = [made] if _looks_like_tool(made) else list(made)
            for tool in tools:
                problem = _tool_problem(tool)
                if problem is not None:
                    raise _Refused(problem)
                if tool.spec.name in plugin.tools:
                    raise _Refused(f"two tools are named {tool.spec.name!r}")
                plugin.tools[tool.spec.name] = PluginTool(tool, plugin.distribution)
        except _Refused as exc:
            plugin.tools.clear()
            plugin.fail(str(exc))
        except Exception as exc:  # importing or running a plugin's code: anything can happen
            plugin.tools.clear()
            plugin.fail(f"{type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------ providers

    def _load_provider(self, plugin: Plugin, entry: EntryPoint) -> None:
        try:
            factory = entry.load()
        except Exception as exc:
            plugin.fail(f"{type(exc).__name__}: {exc}")
            return
        if not callable(factory):
            plugin.fail(f"{entry.value} is not a function returning a provider")
            return
        plugin.factory = factory

    def provider(self, credential: Any) -> Provider:
        """A provider for ``credential`` (a CredentialConfig of a plugin's kind), made by its
        plugin; PluginError when the kind has no ready plugin or the plugin fails (which
        disables it)."""
        plugin = self._kinds.get(credential.kind)
        if plugin is None:
            raise PluginError(f"no plugin provides kind {credential.kind!r}")
        if plugin.factory is None or plugin.state != READY:  # failed once: disabled
            raise PluginError(f"plugin {plugin.distribution} is disabled ({plugin.state})")
        try:
            provider = plugin.factory(credential)
        except Exception as exc:
            reason = f"credential {credential.name!r}: {type(exc).__name__}: {exc}"
            plugin.fail(reason)
            raise PluginError(f"plugin {plugin.distribution} failed for {reason}") from exc
        if not callable(getattr(provider, "stream", None)):
            reason = f"credential {credential.name!r}: {type(provider).__name__} has no stream()"
            plugin.fail(reason)
            raise PluginError(f"plugin {plugin.distribution} failed for {reason}")
        return provider

    # ------------------------------------------------------------------ state

    def state(self) -> list[dict[str, str]]:
        """One entry per plugin: ``{name, kind, source, state}`` (kind ``tools plugin`` or
        ``provider plugin``; source: its distribution)."""
        return [
            {
                "name": plugin.name,
                "kind": "tools plugin" if plugin.group == TOOLS_GROUP else "provider plugin",
                "source": plugin.distribution,
                "state": plugin.state,
            }
            for plugin in self.plugins
        ]


def _refuse_twins(plugins: list[Plugin], names: Callable[[Plugin], list[str]], what: str) -> None:
    """Fail every plugin that claims a name (``names``) another one claims too."""
    claims: dict[str, list[Plugin]] = {}
    for plugin in plugins:
        for name in names(plugin):
            claims.setdefault(name, []).append(plugin)
    for name, claimants in claims.items():
        if len(claimants) < 2:
            continue
        for plugin in claimants:
            others = ", ".join(
                f"{other.distribution} ({other.name})" for other in claimants if other is not plugin
            )
            plugin.tools.clear()
            plugin.factory = None
            plugin.fail(f"{what} {name!r} is also provided by {others}")


class _Refused(Exception):
    """A plugin's tools are not acceptable; the message says why."""


def _looks_like_tool(value: Any) -> bool:
    return hasattr(value, "spec") and hasattr(value, "run")


def _tool_problem(tool: Any) -> str | None:
    """Why ``tool`` cannot be offered to a model, or None. A bad name or schema would make the
    provider refuse every request of every turn, so it is checked here, once."""
    spec = getattr(tool, "spec", None)
    if not isinstance(spec, ToolSpec):
        return f"{type(tool).__name__} is not a tool: its spec must be a chat.runtime.ToolSpec"
    if not isinstance(spec.name, str) or not TOOL_NAME.fullmatch(spec.name):
        return f"tool name {spec.name!r} must be 1-64 letters, digits, '_' or '-'"
    if not isinstance(spec.description, str):
        return f"tool {spec.name!r}: the description must be a string"
    if not isinstance(spec.parameters, Mapping) or spec.parameters.get("type") != "object":
        return f"tool {spec.name!r}: parameters must be a JSON schema of type 'object'"
    if not inspect.iscoroutinefunction(getattr(tool, "run", None)):
        return f"tool {spec.name!r}: run must be an async method"
    if not isinstance(getattr(tool, "concurrency_safe", None), bool):
        return f"tool {spec.name!r}: concurrency_safe must be True or False"
    return None


class PluginTool:
    """A plugin's tool as the runtime sees it: whatever its ``run`` does wrong (raising,
    returning something else than a ToolOutcome) is an error result naming the plugin."""

    def __init__(self, tool: Tool, distribution: str) -> None:
        self.spec = tool.spec
        self.concurrency_safe = tool.concurrency_safe
        self.distribution = distribution
        self._tool = tool

    async def run(self, input: dict[str, Any], ctx: ToolContext) -> ToolOutcome:
        name = self.spec.name
        try:
            outcome = await self._tool.run(input, ctx)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("tool %s of plugin %s failed", name, self.distribution)
            return ToolOutcome(
                f"{name} failed (plugin {self.distribution}): {type(exc).__name__}: {exc}",
                is_error=True,
            )
        if not isinstance(outcome, ToolOutcome):
            return ToolOutcome(
                f"{name} (plugin {self.distribution}) returned {type(outcome).__name__}, "
                "not a ToolOutcome",
                is_error=True,
            )
        return outcome


_plugins: Plugins | None = None


def get_plugins() -> Plugins:
    """The process-wide plugins of the config's ``plugins`` list, loaded on first use (and
    again when that list changes)."""
    # chat.config imports this module (for the kinds plugins provide): imported here.
    from chat.config import get_config

    global _plugins
    allowed = get_config().plugins
    if _plugins is None or _plugins.allowed != allowed:
        _plugins = Plugins(allowed)
    return _plugins

"""The process-wide tool registry: built-ins, run_shell when enabled, plugins' tools and MCP
servers' tools."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from chat.config import McpServerConfig, ToolsConfig, get_config
from chat.plugins import Plugins, get_plugins
from chat.runtime.types import Tool
from chat.tools.builtin import builtin_tools
from chat.tools.mcp import READY, McpServer

logger = logging.getLogger(__name__)


class ToolRegistry:
    """The tools a turn is given, and their state for the ``tools`` surface."""

    def __init__(
        self,
        tools_config: ToolsConfig,
        mcp_servers: Sequence[McpServerConfig] = (),
        plugins: Plugins | None = None,
    ) -> None:
        self.builtins = builtin_tools(tools_config)
        self.plugins = plugins
        # Plugins' tools, but none that would take a built-in's name (those are listed as
        # errors in the tools surface).
        self.plugin_tools: dict[str, Tool] = {}
        self.shadowed: dict[str, Tool] = {}
        for name, tool in (plugins.tools() if plugins is not None else {}).items():
            if name in self.builtins:
                logger.error("plugin tool %s: the name of a built-in tool, skipped", name)
                self.shadowed[name] = tool
            else:
                self.plugin_tools[name] = tool
        for name, tool in self.builtins.items():
            if (state := _builtin_state(tool)) != READY:
                logger.warning("tool %s: %s", name, state)
        self._server_configs = tuple(mcp_servers)
        self.servers = [McpServer(config) for config in self._server_configs]
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        """Connect the MCP servers in the background of the running loop.

        Idempotent: connected or connecting servers are left alone, while servers that failed
        are connected anew, so calling this before every turn brings crashed servers back.
        """
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            if self._loop is not None and not self._loop.is_closed():
                return  # the connections belong to another running loop
            # First start, or the loop that owned the connections is gone (and with it them).
            self._loop = loop
            self.servers = [McpServer(config) for config in self._server_configs]
        for server in self.servers:
            server.start()

    async def wait_until_settled(self) -> None:
        """Wait until every MCP server is ready or has failed."""
        await asyncio.gather(*(server.settled() for server in self.servers))

    async def stop(self) -> None:
        """Disconnect every MCP server (stdio servers' processes end)."""
        await asyncio.gather(*(server.stop() for server in self.servers))

    def tools(self) -> dict[str, Tool]:
        """Every usable tool by name: built-ins first, then the tools of ready plugins, then
        the tools of ready MCP servers; a name already taken is skipped."""
        tools: dict[str, Tool] = {**self.builtins, **self.plugin_tools}
        for server in self.servers:
            if server.state != READY:
                continue  # a failed server's tools disappear until it is connected again
            for name, tool in server.tools.items():
                if name in tools:
                    logger.warning("MCP server %s: tool %s shadowed, skipped", server.name, name)
                    continue
                tools[name] = tool
        return tools

    def state(self) -> list[dict[str, Any]]:
        """One entry per tool, per plugin and per MCP server: ``{name, kind, source, state}``
        (a plugin's name says which kind of plugin it is: ``echo (tools plugin)``)."""
        entries = [
            {"name": name, "kind": "tool", "source": "builtin", "state": _builtin_state(tool)}
            for name, tool in self.builtins.items()
        ]
        for plugin in self.plugins.state() if self.plugins is not None else ():
            entries.append({**plugin, "name": f"{plugin['name']} ({plugin['kind']})"})
        for tools, state in (
            (self.plugin_tools, READY),
            (self.shadowed, "error: the name of a built-in tool"),
        ):
            entries.extend(
                {"name": name, "kind": "tool", "source": _source(tool), "state": state}
                for name, tool in tools.items()
            )
        for server in self.servers:
            entries.append(
                {
                    "name": server.name,
                    "kind": "server",
                    "source": server.name,
                    "state": server.state,
                }
            )
            if server.state == READY:
                entries.extend(
                    {"name": name, "kind": "tool", "source": server.name, "state": READY}
                    for name in server.tools
                )
        return entries


def _source(tool: Tool) -> str:
    """A plugin tool's distribution."""
    return getattr(tool, "distribution", "plugin")


def _builtin_state(tool: Tool) -> str:
    """``ready``, or ``error: …`` for a built-in that cannot run here (run_shell without
    bubblewrap)."""
    problem = getattr(tool, "problem", None)
    reason = problem() if problem is not None else None
    return READY if reason is None else f"error: {reason}"


_registry: ToolRegistry | None = None


def get_tool_registry() -> ToolRegistry:
    """The process-wide registry, built from the Dispatch config on first use."""
    global _registry
    if _registry is None:
        config = get_config()
        _registry = ToolRegistry(config.tools, config.mcp_servers, get_plugins())
    return _registry


def reset_tool_registry() -> None:
    """Forget the process-wide registry (tests change the config); it is not stopped."""
    global _registry
    _registry = None

"""Tools: the built-in set, the sandbox that confines it, and MCP servers (docs/tools.md)."""

from chat.tools.builtin import builtin_tools
from chat.tools.registry import ToolRegistry, get_tool_registry, reset_tool_registry

__all__ = ["ToolRegistry", "builtin_tools", "get_tool_registry", "reset_tool_registry"]

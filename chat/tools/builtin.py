"""The built-in tool set (docs/tools.md)."""

from __future__ import annotations

from chat.config import ToolsConfig
from chat.runtime.types import Tool
from chat.tools.reading import ListFiles, ReadFile, SearchFiles
from chat.tools.shell import RunShell
from chat.tools.writing import EditFile, WriteFile


def builtin_tools(config: ToolsConfig) -> dict[str, Tool]:
    """The built-in tools by name; run_shell only when the deployment enables it."""
    tools: list[Tool] = [ReadFile(), ListFiles(), SearchFiles(), WriteFile(), EditFile()]
    if config.run_shell:
        tools.append(RunShell(config.run_shell_timeout, config.run_shell_network))
    return {tool.spec.name: tool for tool in tools}

"""Fixtures for the tool tests: a working directory, a directory outside it, a tool runner."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chat.config import ToolsConfig
from chat.runtime.types import ToolContext, ToolOutcome
from chat.tools import builtin_tools


class Runner:
    """Runs built-in tools in ``cwd`` and records what they stream."""

    def __init__(self, cwd: Path, config: ToolsConfig) -> None:
        self.cwd = cwd
        self.tools = builtin_tools(config)
        self.output: list[tuple[str, str]] = []

    async def emit(self, data: str, stream: str) -> None:
        self.output.append((data, stream))

    async def __call__(self, name: str, **arguments: Any) -> ToolOutcome:
        return await self.tools[name].run(arguments, ToolContext(str(self.cwd), self.emit))


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "workspace"
    path.mkdir()
    return path


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory next to the workspace holding a secret no tool may read or change."""
    path = tmp_path / "outside"
    path.mkdir()
    (path / "secret.txt").write_text("TOP SECRET\n")
    return path


@pytest.fixture
def run(workspace: Path) -> Runner:
    return Runner(workspace, ToolsConfig(workspace_root=workspace, run_shell=True))

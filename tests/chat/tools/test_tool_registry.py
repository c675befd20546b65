"""The process-wide tool registry: what it offers and how it is built from the config."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from chat.config import ConfigError, ToolsConfig, load_config, reset_config
from chat.tools import ToolRegistry, get_tool_registry, reset_tool_registry


async def test_registry_state_lists_builtins_and_run_shell_when_enabled() -> None:
    registry = ToolRegistry(ToolsConfig(run_shell=True))
    await registry.start()
    await registry.start()  # idempotent
    assert [e["name"] for e in registry.state()] == [
        "read_file",
        "list_files",
        "search_files",
        "write_file",
        "edit_file",
        "run_shell",
    ]
    assert all(
        e == {**e, "kind": "tool", "source": "builtin", "state": "ready"} for e in registry.state()
    )
    assert "run_shell" not in ToolRegistry(ToolsConfig()).tools()


@pytest.fixture
def config_file(tmp_path: Path, settings) -> Iterator[Path]:
    path = tmp_path / "dispatch.toml"
    settings.DISPATCH_CONFIG = str(path)
    reset_config()
    reset_tool_registry()
    yield path
    reset_config()
    reset_tool_registry()


def test_get_tool_registry_is_built_from_the_config(config_file: Path) -> None:
    config_file.write_text(
        '[tools]\nrun_shell = true\n\n[[mcp_servers]]\nname = "files"\ncommand = ["true"]\n'
    )
    registry = get_tool_registry()
    assert get_tool_registry() is registry
    assert "run_shell" in registry.tools()
    servers = [e for e in registry.state() if e["kind"] == "server"]
    assert servers == [
        {"name": "files", "kind": "server", "source": "files", "state": "connecting"}
    ]


def test_without_a_config_file_only_the_safe_built_ins(config_file: Path) -> None:
    assert sorted(get_tool_registry().tools()) == [
        "edit_file",
        "list_files",
        "read_file",
        "search_files",
        "write_file",
    ]


def test_run_shell_network_is_off_unless_the_config_turns_it_on(config_file: Path) -> None:
    config_file.write_text("[tools]\nrun_shell = true\n")
    assert get_tool_registry().tools()["run_shell"].network is False
    reset_tool_registry()
    reset_config()
    config_file.write_text("[tools]\nrun_shell = true\nrun_shell_network = true\n")
    assert get_tool_registry().tools()["run_shell"].network is True
    config_file.write_text('[tools]\nrun_shell_network = "yes"\n')
    with pytest.raises(ConfigError, match="tools.run_shell_network must be true or false"):
        load_config(config_file)

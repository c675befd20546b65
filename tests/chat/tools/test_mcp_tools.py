"""MCP servers through the tool registry, against a real FastMCP server (stdio and HTTP)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from chat.config import McpServerConfig, ToolsConfig
from chat.runtime.types import ToolContext
from chat.tools import ToolRegistry

SERVER_SCRIPT = str(Path(__file__).with_name("mcp_demo_server.py"))
DEMO_TOOLS = ["demo__add", "demo__crash", "demo__echo", "demo__fail", "demo__pid"]


async def _no_output(data: str, stream: str) -> None:
    raise AssertionError("MCP tools stream nothing")


CTX = ToolContext("/nonexistent", _no_output)


async def _registry(*servers: McpServerConfig) -> ToolRegistry:
    registry = ToolRegistry(ToolsConfig(), servers)
    await registry.start()
    await asyncio.wait_for(registry.wait_until_settled(), 30)
    return registry


def _stdio(name: str) -> McpServerConfig:
    return McpServerConfig(name=name, command=(sys.executable, SERVER_SCRIPT))


@pytest.fixture
async def http_server() -> AsyncIterator[str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, SERVER_SCRIPT, "--http", stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    port = int(await asyncio.wait_for(process.stdout.readline(), 30))
    yield f"http://127.0.0.1:{port}/mcp"
    if process.returncode is None:
        process.kill()
    await process.wait()


def _server_state(registry: ToolRegistry, name: str) -> str:
    [entry] = [e for e in registry.state() if e["kind"] == "server" and e["name"] == name]
    return entry["state"]


async def test_stdio_server_tools_list_call_and_fail() -> None:
    registry = await _registry(_stdio("demo"))
    try:
        tools = registry.tools()
        assert sorted(name for name in tools if name.startswith("demo__")) == DEMO_TOOLS
        assert "read_file" in tools  # built-ins stay
        add = tools["demo__add"]
        assert add.spec.description == "Add two integers."
        assert add.spec.parameters["required"] == ["a", "b"]
        assert add.spec.parameters["properties"]["a"]["type"] == "integer"
        assert add.concurrency_safe  # declared readOnlyHint
        assert not tools["demo__echo"].concurrency_safe
        assert _server_state(registry, "demo") == "ready"
        entry = {"name": "demo__echo", "kind": "tool", "source": "demo", "state": "ready"}
        assert entry in registry.state()

        echoed = await tools["demo__echo"].run({"text": "héllo"}, CTX)
        added = await tools["demo__add"].run({"a": 2, "b": 3}, CTX)
        assert (echoed.content, echoed.is_error) == ("héllo", False)
        assert (added.content, added.is_error) == ("5", False)

        failed = await tools["demo__fail"].run({"message": "no luck"}, CTX)
        assert failed.is_error and "no luck" in failed.content
        bad_args = await tools["demo__add"].run({"a": "two"}, CTX)
        assert bad_args.is_error and "validation error" in bad_args.content
        assert _server_state(registry, "demo") == "ready"  # a failing tool is not a failing server
    finally:
        await asyncio.wait_for(registry.stop(), 30)
    assert _server_state(registry, "demo") == "stopped"


async def test_crashed_servers_report_errors_and_come_back_on_start() -> None:
    registry = await _registry(_stdio("mid"), _stdio("idle"))
    try:
        tools = registry.tools()
        # "mid" dies while answering a call.
        crashed = await asyncio.wait_for(tools["mid__crash"].run({}, CTX), 30)
        assert crashed.is_error
        assert crashed.content.startswith("MCP server mid went away (error: ")
        assert _server_state(registry, "mid").startswith("error: ")
        later = await asyncio.wait_for(tools["mid__echo"].run({"text": "hi"}, CTX), 30)
        assert later.is_error and "not available (error: " in later.content
        assert not any(name.startswith("mid__") for name in registry.tools())

        # "idle" is killed between calls: the next call notices instead of hanging.
        pid = int((await tools["idle__pid"].run({}, CTX)).content)
        os.kill(pid, signal.SIGKILL)
        outcome = await asyncio.wait_for(tools["idle__echo"].run({"text": "hi"}, CTX), 30)
        assert outcome.is_error and "MCP server idle" in outcome.content
        assert _server_state(registry, "idle").startswith("error: ")

        # start() again reconnects failed servers; the tools a turn already holds work again.
        await registry.start()
        await asyncio.wait_for(registry.wait_until_settled(), 30)
        assert _server_state(registry, "mid") == "ready"
        assert _server_state(registry, "idle") == "ready"
        again = await tools["idle__echo"].run({"text": "back"}, CTX)
        assert (again.content, again.is_error) == ("back", False)
        assert int((await tools["idle__pid"].run({}, CTX)).content) != pid
    finally:
        await asyncio.wait_for(registry.stop(), 30)


async def test_streamable_http_round_trip_and_crash(http_server: str) -> None:
    registry = await _registry(McpServerConfig(name="web", url=http_server))
    try:
        assert _server_state(registry, "web") == "ready"
        tools = registry.tools()
        echoed = await tools["web__echo"].run({"text": "over http"}, CTX)
        assert (echoed.content, echoed.is_error) == ("over http", False)
        crashed = await asyncio.wait_for(tools["web__crash"].run({}, CTX), 30)
        assert crashed.is_error
        later = await asyncio.wait_for(tools["web__echo"].run({"text": "hi"}, CTX), 30)
        assert later.is_error
        assert _server_state(registry, "web").startswith("error: ")
    finally:
        await asyncio.wait_for(registry.stop(), 30)


async def test_unreachable_and_broken_servers_are_reported(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    registry = await _registry(
        McpServerConfig(name="gone", url=f"http://127.0.0.1:{port}/mcp"),
        McpServerConfig(name="nocmd", command=(str(tmp_path / "no-such-program"),)),
        McpServerConfig(name="quits", command=(sys.executable, "-c", "pass")),
    )
    try:
        for name in ["gone", "nocmd", "quits"]:
            assert _server_state(registry, name).startswith("error: ")
        assert sorted(registry.tools()) == sorted(ToolRegistry(ToolsConfig()).tools())
    finally:
        await asyncio.wait_for(registry.stop(), 30)

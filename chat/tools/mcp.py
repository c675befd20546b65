"""MCP servers (the official ``mcp`` SDK): connect, list their tools, call them.

Each connection to a server is owned by one background task (the SDK's context managers must
be entered and left in the same task). Its tools are offered as ``<server>__<tool>``. A server
that cannot be reached, or dies, goes to the state ``error: …``; calls to its tools then return
isError outcomes instead of raising or hanging, until ``start`` connects it anew.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
from mcp import ClientSession, McpError, StdioServerParameters, types
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from chat.config import McpServerConfig
from chat.runtime.types import ToolContext, ToolOutcome, ToolSpec
from chat.tools.base import truncate

logger = logging.getLogger(__name__)

# Seconds a server gets to start and answer initialize + tools/list.
CONNECT_TIMEOUT = 30.0
# The SDK's own HTTP defaults: a response stream may stay silent for up to five minutes.
HTTP_TIMEOUT = httpx.Timeout(30.0, read=300.0)
CONNECTING = "connecting"
READY = "ready"
STOPPED = "stopped"


def tool_name(server: str, tool: str) -> str:
    """The name the model sees: ``<server>__<tool>``, limited to what every provider accepts."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", f"{server}__{tool}")


def _describe(exc: BaseException) -> str:
    """One line for the state: the first real error inside (possibly nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, TimeoutError):
        return f"no answer within {CONNECT_TIMEOUT:g}s"
    return str(exc) or type(exc).__name__


def _content_text(result: types.CallToolResult) -> str:
    """The result as text: text blocks verbatim, other blocks as a short placeholder."""
    parts: list[str] = []
    for block in result.content:
        if isinstance(block, types.TextContent):
            parts.append(block.text)
        elif isinstance(block, types.ImageContent | types.AudioContent):
            parts.append(f"[{block.type} content: {block.mimeType}]")
        elif isinstance(block, types.EmbeddedResource):
            resource = block.resource
            if isinstance(resource, types.TextResourceContents):
                parts.append(resource.text)
            else:
                parts.append(f"[resource: {resource.uri}]")
        elif isinstance(block, types.ResourceLink):
            parts.append(f"[resource link: {block.uri}]")
    if not parts and result.structuredContent is not None:
        parts.append(json.dumps(result.structuredContent))
    return "\n".join(parts)


class _WatchedStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, on_failure: Callable[[str], None]) -> None:
        self._inner = inner
        self._on_failure = on_failure

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                yield chunk
        except httpx.TransportError as exc:
            self._on_failure(_describe(exc))
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()


class _WatchedTransport(httpx.AsyncBaseTransport):
    """Reports a POST that fails on the wire: the server died or vanished.

    The SDK only logs such a failure and keeps waiting for the answer that will never come;
    reporting it lets the server go to ``error`` and its pending calls return.
    """

    def __init__(self, on_failure: Callable[[str], None]) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._on_failure = on_failure

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method != "POST":  # the GET event stream reconnects by itself
            return await self._inner.handle_async_request(request)
        try:
            response = await self._inner.handle_async_request(request)
        except httpx.TransportError as exc:
            self._on_failure(_describe(exc))
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _WatchedStream(response.stream, self._on_failure)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


class McpServer:
    """One configured MCP server: its current connection, state and tools.

    A server that failed (or was stopped) is connected anew by ``start``; tool objects handed
    out earlier keep working because they call through the server, not the connection.
    """

    def __init__(self, config: McpServerConfig) -> None:
        self.config = config
        self._connection: _Connection | None = None

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def state(self) -> str:
        return self._connection.state if self._connection else CONNECTING

    @property
    def tools(self) -> dict[str, McpTool]:
        """The server's tools by the name the model sees (empty unless ready)."""
        if self._connection is None or self._connection.state != READY:
            return {}
        return self._connection.tools

    def start(self) -> None:
        """Connect in a background task of the running loop; a no-op while connected."""
        previous = self._connection
        if previous is not None and not previous.leaving:
            return
        self._connection = _Connection(self, previous)

    async def settled(self) -> None:
        """Wait until the current connection is ready or has failed."""
        if self._connection is not None:
            await self._connection.settled.wait()

    async def stop(self) -> None:
        """Close the connection (and end a stdio server's process)."""
        if self._connection is not None:
            await self._connection.close()

    async def call(self, remote_name: str, arguments: dict[str, Any]) -> ToolOutcome:
        """Call one of the server's tools; every failure is an isError outcome."""
        connection = self._connection
        if connection is None or connection.state != READY:
            return ToolOutcome(f"MCP server {self.name} is not available ({self.state})", True)
        return await connection.call(remote_name, arguments)


class _Connection:
    """One connection to a server, owned by one background task from start to end."""

    def __init__(self, server: McpServer, previous: _Connection | None) -> None:
        self.config = server.config
        self.state = CONNECTING
        self.tools: dict[str, McpTool] = {}
        self.settled = asyncio.Event()  # ready or failed
        self._session: ClientSession | None = None
        self._leave = asyncio.Event()  # set on close() or a failure
        self._closed = asyncio.Event()  # the task has ended
        self._task = asyncio.get_running_loop().create_task(
            self._run(server, previous), name=f"mcp-server:{server.name}"
        )

    @property
    def leaving(self) -> bool:
        return self._leave.is_set()

    async def close(self) -> None:
        self._leave.set()
        await self._task

    def fail(self, message: str) -> None:
        if not self.state.startswith("error"):
            logger.warning("MCP server %s: %s", self.config.name, message)
            self.state = f"error: {message}"
        self._leave.set()
        self.settled.set()

    @contextlib.asynccontextmanager
    async def _transport(self) -> AsyncIterator[tuple[Any, Any]]:
        if self.config.command:
            command, *args = self.config.command
            params = StdioServerParameters(command=command, args=args, env=dict(self.config.env))
            async with stdio_client(params) as (read, write):
                yield read, write
        elif self.config.url:
            client = httpx.AsyncClient(
                timeout=HTTP_TIMEOUT,
                transport=_WatchedTransport(self.fail),
            )
            async with (
                client,
                streamable_http_client(self.config.url, http_client=client) as (read, write, _),
            ):
                yield read, write
        else:
            raise ValueError("neither command nor url is configured")

    async def _run(self, server: McpServer, previous: _Connection | None) -> None:
        if previous is not None:
            await previous.close()  # a stdio server's old process is gone before the new one
        try:
            async with self._transport() as (read, write), ClientSession(read, write) as session:
                async with asyncio.timeout(CONNECT_TIMEOUT):
                    await session.initialize()
                    listed = await self._list_tools(session)
                for tool in listed:
                    name = tool_name(server.name, tool.name)
                    self.tools.setdefault(name, McpTool(server, name, tool))
                self._session = session
                self.state = READY
                self.settled.set()
                await self._leave.wait()
        except Exception as exc:  # the connection, the process or the protocol failed
            self.fail(_describe(exc))
        finally:
            self._session = None
            if self.state == READY:  # left on purpose (close)
                self.state = STOPPED
            self._closed.set()
            self.settled.set()

    @staticmethod
    async def _list_tools(session: ClientSession) -> list[types.Tool]:
        tools: list[types.Tool] = []
        cursor: str | None = None
        while True:
            params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
            page = await session.list_tools(params=params)
            tools.extend(page.tools)
            cursor = page.nextCursor
            if not cursor:
                return tools

    async def call(self, remote_name: str, arguments: dict[str, Any]) -> ToolOutcome:
        name = self.config.name
        session = self._session
        if session is None:
            return ToolOutcome(f"MCP server {name} is not available ({self.state})", True)
        call = asyncio.ensure_future(session.call_tool(remote_name, arguments))
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            # A dead connection does not always answer pending requests; do not wait forever.
            await asyncio.wait({call, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
            if not call.done():
                call.cancel()
        if not call.done() or call.cancelled():
            return ToolOutcome(f"MCP server {name} went away ({self.state})", True)
        try:
            result = call.result()
        except McpError as exc:
            if exc.error.code == types.CONNECTION_CLOSED:
                self.fail("the connection closed")
                return ToolOutcome(f"MCP server {name} went away ({self.state})", True)
            return ToolOutcome(f"MCP server {name}: {exc.error.message}", True)
        except Exception as exc:  # a malformed result or a transport error of this one call
            return ToolOutcome(f"MCP server {name}: {_describe(exc)}", True)
        return ToolOutcome(truncate(_content_text(result)), bool(result.isError))


class McpTool:
    """A tool of an MCP server, as the runtime's Tool protocol."""

    def __init__(self, server: McpServer, name: str, tool: types.Tool) -> None:
        self.server = server
        self.remote_name = tool.name
        self.spec = ToolSpec(
            name=name,
            description=tool.description or f"{tool.name} (MCP server {server.name})",
            parameters=tool.inputSchema,
        )
        # Only tools the server declares read-only may run alongside others.
        self.concurrency_safe = bool(tool.annotations and tool.annotations.readOnlyHint)

    async def run(self, input: dict[str, Any], ctx: ToolContext) -> ToolOutcome:
        """Forward the call to the server (it validates the arguments against its schema)."""
        if not isinstance(input, dict):
            return ToolOutcome(f"{self.spec.name}: arguments must be a JSON object", True)
        return await self.server.call(self.remote_name, input)

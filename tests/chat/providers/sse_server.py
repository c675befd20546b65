"""A real HTTP server on 127.0.0.1 that replays scripted responses, SSE streams included.

It speaks plain HTTP/1.1 (chunked bodies), so the official OpenAI and Anthropic SDKs talk to it
as to the real APIs. Each path has a queue of scripted replies, served in order, one per
request; every request is recorded. Reusable by any suite that needs a scripted model::

    with ScriptedServer() as server:
        server.script("/v1/chat/completions", openai_tool_reply([...]), openai_text_reply("done"))
        provider = OpenAIProvider(base_url=server.url + "/v1", api_key="test")

A ``threading.Event`` inside a reply's events holds the stream there until it is set (to
test a turn stopped mid-stream); ``ScriptedServer.close`` releases every such gate. A
``Pause`` paces the stream like a model producing tokens at a given speed.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx


@dataclass(frozen=True)
class SSE:
    """One server-sent event: ``data`` is JSON-encoded unless it is a str (sent verbatim)."""

    data: Any
    event: str | None = None

    def encode(self) -> bytes:
        data = self.data if isinstance(self.data, str) else json.dumps(self.data)
        head = f"event: {self.event}\n" if self.event else ""
        return f"{head}data: {data}\n\n".encode()


@dataclass(frozen=True)
class Pause:
    """Wait ``seconds`` before the next item: a model's pace between tokens."""

    seconds: float


StreamItem = SSE | dict[str, Any] | str | threading.Event | Pause


@dataclass
class Reply:
    """One scripted response: a JSON ``body``, or else an SSE stream of ``events``.

    ``cut`` drops the connection after the events, in the middle of the chunked body.
    """

    status: int = 200
    events: Sequence[StreamItem] = ()
    body: Any = None
    cut: bool = False
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: Mapping[str, str]
    body: Any  # parsed JSON, or None


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        """A client that hangs up mid-reply (a test done with the stream) is not an error."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class ScriptedServer:
    """The server; ``url`` is ``http://127.0.0.1:<ephemeral port>``."""

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self._scripts: dict[str, deque[Reply]] = {}
        self._gates: list[threading.Event] = []
        self._lock = threading.Lock()
        self._httpd = _QuietServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        # A short poll interval keeps close() (which waits for the poll) fast.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def script(self, path: str, *replies: Reply) -> None:
        """Queue replies for ``path`` (exact, without query string), served in order."""
        with self._lock:
            self._scripts.setdefault(path, deque()).extend(replies)
            for reply in replies:
                self._gates.extend(e for e in reply.events if isinstance(e, threading.Event))

    def pending(self, path: str) -> int:
        """How many scripted replies for ``path`` are still unserved."""
        with self._lock:
            return len(self._scripts.get(path, ()))

    def start(self) -> ScriptedServer:
        self._thread.start()
        return self

    def close(self) -> None:
        for gate in self._gates:
            gate.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def __enter__(self) -> ScriptedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _next_reply(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            queue = self._scripts.get(request.path)
            if queue:
                return queue.popleft()
        message = f"nothing scripted for {request.method} {request.path}"
        return Reply(status=404, body={"error": {"type": "not_found", "message": message}})


def _handler_for(server: ScriptedServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

        def do_GET(self) -> None:
            self._serve(None)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            self._serve(json.loads(raw) if raw else None)

        def _serve(self, body: Any) -> None:
            request = RecordedRequest(
                self.command, self.path.split("?")[0], httpx.Headers(self.headers.items()), body
            )
            reply = server._next_reply(request)
            self.close_connection = True
            if reply.body is not None or not reply.events:
                payload = json.dumps(reply.body if reply.body is not None else {}).encode()
                self.send_response(reply.status)
                self._headers(reply, "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            self.send_response(reply.status)
            self._headers(reply, "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for item in reply.events:
                if isinstance(item, threading.Event):
                    self.wfile.flush()
                    item.wait()
                    continue
                if isinstance(item, Pause):
                    time.sleep(item.seconds)
                    continue
                event = item if isinstance(item, SSE) else SSE(item)
                data = event.encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()
            if not reply.cut:
                self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

        def _headers(self, reply: Reply, content_type: str) -> None:
            self.send_header("Content-Type", content_type)
            self.send_header("Connection", "close")
            for name, value in reply.headers.items():
                self.send_header(name, value)

    return Handler


# ---------------------------------------------------------------- OpenAI chat completions


def openai_chunk(
    delta: Mapping[str, Any] | None = None,
    finish_reason: str | None = None,
    *,
    usage: Mapping[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One ``chat.completion.chunk``; ``delta=None`` and no finish gives empty ``choices``."""
    choices = []
    if delta is not None or finish_reason is not None:
        choices = [{"index": 0, "delta": dict(delta or {}), "finish_reason": finish_reason}]
    chunk: dict[str, Any] = {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "test-model",
        "choices": choices,
        **extra,
    }
    if usage is not None:
        chunk["usage"] = dict(usage)
    return chunk


def openai_usage(prompt: int, completion: int, cached: int | None = None) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if cached is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    return usage


OPENAI_DONE = "[DONE]"


def openai_models_reply(*ids: str, windows: Mapping[str, Mapping[str, Any]] | None = None) -> Reply:
    """A ``GET /v1/models`` listing; ``windows`` adds fields to a model's entry, the way
    servers report its context window (``{"m": {"max_model_len": 8192}}``)."""
    windows = windows or {}
    data = [
        {"id": i, "object": "model", "created": 0, "owned_by": "test", **windows.get(i, {})}
        for i in ids
    ]
    return Reply(body={"object": "list", "data": data})


def openai_text_reply(text: str, *, prompt_tokens: int = 10, completion_tokens: int = 5) -> Reply:
    """A complete streamed answer: the text in two deltas, finish, usage, [DONE]."""
    half = len(text) // 2
    return Reply(
        events=[
            openai_chunk({"role": "assistant", "content": text[:half]}),
            openai_chunk({"content": text[half:]}),
            openai_chunk({}, "stop"),
            openai_chunk(usage=openai_usage(prompt_tokens, completion_tokens)),
            OPENAI_DONE,
        ]
    )


def openai_tool_reply(calls: Sequence[tuple[str, str, Mapping[str, Any]]]) -> Reply:
    """A streamed step calling tools: ``calls`` = [(tool_call_id, tool_name, input)]."""
    events: list[StreamItem] = [openai_chunk({"role": "assistant", "content": None})]
    for index, (call_id, name, arguments) in enumerate(calls):
        fragment = {
            "index": index,
            "id": call_id,
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments)},
        }
        events.append(openai_chunk({"tool_calls": [fragment]}))
    events += [
        openai_chunk({}, "tool_calls"),
        openai_chunk(usage=openai_usage(10, 5)),
        OPENAI_DONE,
    ]
    return Reply(events=events)


# ---------------------------------------------------------------- Anthropic messages


def anthropic_event(type_: str, **fields: Any) -> SSE:
    """One Messages API stream event (the SSE ``event:`` name is its type)."""
    return SSE({"type": type_, **fields}, event=type_)


def anthropic_message_start(input_tokens: int = 10, **usage: int) -> SSE:
    return anthropic_event(
        "message_start",
        message={
            "id": "msg_test",
            "type": "message",
            "role": "assistant",
            "model": "test-model",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": 1, **usage},
        },
    )


def anthropic_end(stop_reason: str, output_tokens: int = 5) -> list[SSE]:
    return [
        anthropic_event(
            "message_delta",
            delta={"stop_reason": stop_reason, "stop_sequence": None},
            usage={"output_tokens": output_tokens},
        ),
        anthropic_event("message_stop"),
    ]


def anthropic_text_reply(text: str) -> Reply:
    """A complete streamed answer with one text block."""
    return Reply(
        events=[
            anthropic_message_start(),
            anthropic_event(
                "content_block_start", index=0, content_block={"type": "text", "text": ""}
            ),
            anthropic_event(
                "content_block_delta", index=0, delta={"type": "text_delta", "text": text}
            ),
            anthropic_event("content_block_stop", index=0),
            *anthropic_end("end_turn"),
        ]
    )


def anthropic_tool_reply(calls: Sequence[tuple[str, str, Mapping[str, Any]]]) -> Reply:
    """A streamed step calling tools: ``calls`` = [(tool_use_id, tool_name, input)]."""
    events: list[StreamItem] = [anthropic_message_start()]
    for index, (call_id, name, arguments) in enumerate(calls):
        block = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
        delta = {"type": "input_json_delta", "partial_json": json.dumps(arguments)}
        events += [
            anthropic_event("content_block_start", index=index, content_block=block),
            anthropic_event("content_block_delta", index=index, delta=delta),
            anthropic_event("content_block_stop", index=index),
        ]
    events += anthropic_end("tool_use")
    return Reply(events=events)

"""The model stand-in: an OpenAI chat-completions server that streams on a schedule.

``python -m bench.standin --port 0 --rate 20 --tokens 200 --ttft 50`` serves
``POST /v1/chat/completions`` (streaming only: SSE chunks, a finish chunk, an
``include_usage`` usage chunk and ``[DONE]``) and ``GET /v1/models``. Each stream waits
``--ttft`` ms, then writes ``--tokens`` tokens at ``--rate`` tokens/s on an absolute schedule
(a late token does not push the next ones back). A request's ``max_tokens`` caps the count.

A prompt whose last user message contains ``[tool]`` is answered with one ``list_files`` tool
call instead (so a turn takes two steps: the call, then text once the result comes back).

Every token's content is ``·<ns>``: ``time.monotonic_ns()`` when it was written. CLOCK_MONOTONIC
is shared by all processes on Linux, so any client computes a token's latency as its receive
time minus that stamp. The first line on stdout is ``listening <port>``.

Per-token work is one stamp, one bytes join and one ``write``; the server is plain asyncio
streams, so one process holds a thousand concurrent streams.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

MODEL = "standin"
TOOL_MARKER = "[tool]"  # in the last user message: answer with a tool call
TOKEN_MARK = "\u00b7"  # the "·" before each token's stamp
STAMP = re.compile(TOKEN_MARK + r"(\d+)")

_HEAD = b'{"id":"chatcmpl-standin","object":"chat.completion.chunk","created":0,"model":"'
_FIRST = b'","choices":[{"index":0,"delta":{"role":"assistant","content":"\\u00b7'
_NEXT = b'","choices":[{"index":0,"delta":{"content":"\\u00b7'
_TAIL = b'"},"finish_reason":null}]}'


@dataclass(frozen=True)
class Schedule:
    rate: float  # tokens/s per stream
    tokens: int  # tokens per stream
    ttft: float  # seconds before the first token


def stamps(text: str) -> list[int]:
    """The write stamps (monotonic ns) of the tokens in a piece of streamed text."""
    return [int(m) for m in STAMP.findall(text)]


def _chunk(payload: bytes) -> bytes:
    """One HTTP/1.1 chunk carrying one SSE event."""
    body = b"data: " + payload + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(body), body)


class StandinServer:
    """The asyncio server; ``serve()`` runs it until cancelled."""

    def __init__(self, schedule: Schedule):
        self.schedule = schedule

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self._request(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request on a keep-alive connection; False when the connection is done."""
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *lines = head.decode("latin-1").split("\r\n")
        method, path, _ = (request_line.split(" ") + ["", ""])[:3]
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length") or 0))
        if method == "GET" and path.endswith("/models"):
            # Its window, as OpenRouter and many proxies report it (vLLM: max_model_len).
            model = {"id": MODEL, "object": "model", "owned_by": "", "context_length": 8192}
            listing = {"object": "list", "data": [model]}
            self._respond(writer, 200, json.dumps(listing).encode())
        elif method == "POST" and path.endswith("/chat/completions"):
            request = json.loads(body or b"{}")
            if not request.get("stream"):
                self._respond(writer, 400, b'{"error":{"message":"the stand-in only streams"}}')
            else:
                await self._stream(writer, request, prompt_tokens=max(1, len(body) // 4))
        else:
            self._respond(writer, 404, b'{"error":{"message":"not found"}}')
        await writer.drain()
        return headers.get("connection", "").lower() != "close"

    @staticmethod
    def _respond(writer: asyncio.StreamWriter, status: int, body: bytes) -> None:
        writer.write(
            b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (status, len(body), body)
        )

    async def _stream(self, writer: asyncio.StreamWriter, request: dict, prompt_tokens: int):
        schedule = self.schedule
        count = schedule.tokens
        messages = request.get("messages") or [{}]
        last = messages[-1]
        if last.get("role") == "user" and TOOL_MARKER in str(last.get("content") or ""):
            self._tool_call(writer, request, prompt_tokens, call_id=f"call-{len(messages)}")
            return
        if isinstance(request.get("max_tokens"), int):
            count = min(count, request["max_tokens"])
        model = str(request.get("model", MODEL)).encode()
        head, first, following = _HEAD + model, _HEAD + model + _FIRST, _HEAD + model + _NEXT
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        loop = asyncio.get_running_loop()
        start = loop.time() + schedule.ttft
        interval = 1.0 / schedule.rate
        for index in range(count):
            delay = start + index * interval - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if writer.is_closing():
                return  # the client went away
            # No drain per token: a slow reader must not move the stamps off the schedule.
            stamp = b"%d" % time.monotonic_ns()
            writer.write(_chunk((first if index == 0 else following) + stamp + _TAIL))
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": count}
        usage["total_tokens"] = prompt_tokens + count
        writer.write(
            _chunk(head + b'","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}')
            + _chunk(head + b'","choices":[],"usage":' + json.dumps(usage).encode() + b"}")
            + _chunk(b"[DONE]")
            + b"0\r\n\r\n"
        )

    @staticmethod
    def _tool_call(writer: asyncio.StreamWriter, request: dict, prompt_tokens: int, call_id: str):
        model = str(request.get("model", MODEL))
        call = {"index": 0, "id": call_id, "type": "function"}
        call["function"] = {"name": "list_files", "arguments": "{}"}
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": 1}
        usage["total_tokens"] = prompt_tokens + 1
        chunks = [
            {"choices": [{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": None}]},
            {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
            {"choices": [], "usage": usage},
        ]
        head = {"id": "chatcmpl-standin", "object": "chat.completion.chunk", "created": 0}
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
            + b"".join(_chunk(json.dumps(head | {"model": model} | c).encode()) for c in chunks)
            + _chunk(b"[DONE]")
            + b"0\r\n\r\n"
        )

    async def serve(self, host: str, port: int) -> None:
        server = await asyncio.start_server(self.handle, host, port, backlog=4096)
        print(f"listening {server.sockets[0].getsockname()[1]}", flush=True)
        async with server:
            await server.serve_forever()


class StandinProcess:
    """The stand-in as a child process (a context manager); ``url`` is its ``/v1`` base."""

    def __init__(self, schedule: Schedule):
        self.schedule = schedule
        self.process: subprocess.Popen | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> StandinProcess:
        s = self.schedule
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.standin", "--port", "0", "--rate", str(s.rate)]
            + ["--tokens", str(s.tokens), "--ttft", str(s.ttft * 1000)],
            cwd=Path(__file__).resolve().parent.parent,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.process.stdout.readline()  # blocks until it listens (or dies: "")
        if not line.startswith("listening "):
            self.stop()
            raise RuntimeError(f"the stand-in did not start: {line!r}")
        self.port = int(line.split()[1])
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def __enter__(self) -> StandinProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.standin", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: a free port (printed)")
    parser.add_argument("--rate", type=float, default=20.0, help="tokens/s per stream")
    parser.add_argument("--tokens", type=int, default=200, help="tokens per stream")
    parser.add_argument("--ttft", type=float, default=50.0, help="ms before the first token")
    args = parser.parse_args(argv)
    server = StandinServer(Schedule(args.rate, args.tokens, args.ttft / 1000))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(server.serve(args.host, args.port))


if __name__ == "__main__":
    main()

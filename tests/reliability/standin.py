"""A fast OpenAI-format model stand-in for load tests: a tiny asyncio HTTP server.

Every ``POST /v1/chat/completions`` streams a complete answer at once (no scripting, so it
keeps up with hundreds of concurrent turns): ``TOKENS`` text deltas, a finish reason and a
usage chunk. A turn whose prompt contains ``TOOL_MARKER`` first gets a step calling
``list_files``, so those turns take two steps. Run it as a process::

    python -m tests.reliability.standin      # prints "PORT <n>" once it listens
"""

from __future__ import annotations

import asyncio
import json
import sys

TOKENS = 4
TOOL_MARKER = "[tool]"


def _chunk(delta: dict | None = None, finish: str | None = None, usage: dict | None = None):
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    body = {"id": "standin", "object": "chat.completion.chunk", "created": 0, "model": "m"}
    body["choices"] = choices
    if usage is not None:
        body["usage"] = usage
    return body


def reply_events(request: dict) -> list[dict]:
    """The SSE payloads answering one chat-completions request."""
    messages = request.get("messages") or [{}]
    last = messages[-1]
    prompt = last.get("content") or ""
    usage = {"prompt_tokens": 10 * len(messages), "completion_tokens": TOKENS}
    usage["total_tokens"] = usage["prompt_tokens"] + TOKENS
    if last.get("role") == "user" and TOOL_MARKER in prompt:
        call = {"index": 0, "id": f"call-{len(messages)}", "type": "function"}
        call["function"] = {"name": "list_files", "arguments": "{}"}
        return [
            _chunk({"role": "assistant", "content": None}),
            _chunk({"tool_calls": [call]}),
            _chunk({}, "tool_calls"),
            _chunk(usage=usage),
        ]
    deltas = [_chunk({"content": f"t{index}-{len(prompt)} "}) for index in range(TOKENS)]
    return [*deltas, _chunk({}, "stop"), _chunk(usage=usage)]


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.decode("latin-1").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        body = json.loads(await reader.readexactly(length)) if length else {}
        payload = b"".join(
            b"data: %s\n\n" % json.dumps(event).encode() for event in reply_events(body)
        )
        payload += b"data: [DONE]\n\n"
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload)
        )
        await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass  # the client went away; nothing to answer
    finally:
        writer.close()


async def main() -> None:
    server = await asyncio.start_server(_serve, "127.0.0.1", 0, backlog=1024)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)

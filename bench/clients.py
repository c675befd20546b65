"""Benchmark clients: many concurrent streams from one asyncio process.

``direct_streams`` reads the stand-in itself (the baseline); ``socket_turns`` runs turns
through Dispatch's WebSocket protocol (``chat.send``; one socket carries several
conversations). Both record, per
streamed token, receive time minus the stand-in's write stamp, and per turn the times of its
first and last token.
"""

from __future__ import annotations

import asyncio
import json
import time
from array import array
from dataclasses import dataclass, field

import websockets

from bench.standin import MODEL, stamps

IDLE_TIMEOUT = 30.0  # seconds without a frame on a socket whose turns are not all sealed


@dataclass
class Trace:
    """One stream / turn as a client saw it (times are monotonic ns)."""

    sent: int = 0
    first_delta: int = 0  # the first text-delta's arrival, stamped or not
    tokens: int = 0
    first_recv: int = 0
    last_recv: int = 0
    first_stamp: int = 0
    last_stamp: int = 0
    ttft_ms: float | None = None  # the server's step-complete ttftMs
    decode_ms: float | None = None
    output_tokens: int | None = None
    done: bool = False
    error: str = ""

    def add(self, text: str, now: int, run: Run) -> None:
        for stamp in stamps(text):
            run.latencies.append(now - stamp)
            run.stamps.append(stamp)
            if not self.tokens:
                self.first_recv, self.first_stamp = now, stamp
            self.tokens += 1
            self.last_recv, self.last_stamp = now, stamp


@dataclass
class Run:
    """Every trace and every per-token latency (ns) of one measured run."""

    traces: list[Trace]
    latencies: array = field(default_factory=lambda: array("q"))
    stamps: array = field(default_factory=lambda: array("q"))  # each latency's write stamp
    wall_s: float = 0.0


# ---------------------------------------------------------------- the stand-in, directly


async def direct_streams(
    port: int, count: int, *, prompt: str = "hi", together: bool = False
) -> Run:
    """``count`` concurrent streams read straight from the stand-in (raw HTTP/1.1).
    ``together``: every connection is open before the first request is sent."""
    run = Run([Trace() for _ in range(count)])
    gate = Gate(count if together else 0)
    started = time.monotonic()
    await asyncio.gather(*(_direct(port, trace, run, prompt, gate) for trace in run.traces))
    run.wall_s = time.monotonic() - started
    return run


async def _direct(port: int, trace: Trace, run: Run, prompt: str, gate: Gate) -> None:
    body = json.dumps(
        {
            "model": MODEL,
            "messages": [{"role": "user", "content": prompt}],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    ).encode()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    except OSError as exc:
        gate.leave(id(trace))
        trace.error = repr(exc)
        return
    try:
        await gate.arrive(id(trace))
        trace.sent = time.monotonic_ns()
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: standin\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        while line := await reader.readline():
            if not line.startswith(b"data: "):
                continue  # chunk sizes and blank lines
            if line.startswith(b"data: [DONE]"):
                trace.done = True
                break
            now = time.monotonic_ns()
            for choice in json.loads(line[6:])["choices"]:
                trace.add(choice["delta"].get("content") or "", now, run)
    finally:
        writer.close()


# ---------------------------------------------------------------- turns over POST /chat


async def ndjson_turns(
    url: str, token: str, count: int, *, prefix: str, deadline: float, together: bool = True
) -> Run:
    """``count`` turns started with ``POST /chat``, each read as its NDJSON stream to
    ``turn-sealed`` (raw HTTP/1.1, one connection each). ``together``: every connection is
    open before the first request is sent."""
    run = Run([Trace() for _ in range(count)])
    gate = Gate(count if together else 0)
    host, port = url.removeprefix("http://").split(":")
    started = time.monotonic()
    jobs = [
        _ndjson(host, int(port), token, f"{prefix}-{i}", trace, run, gate)
        for i, trace in enumerate(run.traces)
    ]
    return await _finish(run, jobs, deadline, started)


async def _ndjson(
    host: str, port: int, token: str, conversation_id: str, trace: Trace, run: Run, gate: Gate
) -> None:
    body = json.dumps({"conversationId": conversation_id, "message": "go"}).encode()
    try:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
    except OSError as exc:
        gate.leave(id(trace))
        trace.error = repr(exc)
        return
    try:
        await gate.arrive(id(trace))
        trace.sent = time.monotonic_ns()
        writer.write(
            b"POST /chat HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n"
            b"Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (host.encode(), port, token.encode(), len(body), body)
        )
        status = await reader.readline()
        if b" 200 " not in status:
            trace.error = status.decode(errors="replace").strip() or "no response"
            return
        while (await reader.readline()) not in (b"\r\n", b""):
            pass  # headers
        pending = b""
        while not trace.done:
            size = int((await reader.readline()).split(b";")[0] or b"0", 16)  # chunked body
            if size == 0:
                break
            data = await reader.readexactly(size + 2)
            now = time.monotonic_ns()
            *lines, pending = (pending + data[:-2]).split(b"\n")
            for line in lines:
                event = json.loads(line)
                kind = event["type"]
                if kind == "text-delta":
                    trace.first_delta = trace.first_delta or now
                    trace.add(event["delta"], now, run)
                elif kind == "error":
                    trace.error = event["message"]
                elif kind == "turn-sealed":
                    trace.done = True
        if not trace.done:
            trace.error = trace.error or "the stream ended before turn-sealed"
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
        trace.error = trace.error or repr(exc)[:200]
    finally:
        writer.close()


# ---------------------------------------------------------------- turns over WebSockets


async def socket_turns(
    ws_urls: list[str],
    count: int,
    *,
    per_socket: int,
    prefix: str,
    deadline: float,
    model: str | None = None,
    message: str = "go",
    together: bool = False,
) -> Run:
    """Start ``count`` turns with ``chat.send`` on sockets spread over ``ws_urls``; wait for
    every ``turn-sealed`` (or the deadline, in seconds). ``together``: every socket connects
    first, then all of them send their ``chat.send`` frames at once (a burst)."""
    run = Run([Trace() for _ in range(count)])
    groups = [list(range(i, min(i + per_socket, count))) for i in range(0, count, per_socket)]
    gate = Gate(len(groups) if together else 0)
    started = time.monotonic()
    jobs = [
        _socket(
            ws_urls[n % len(ws_urls)],
            {f"{prefix}-{i}": run.traces[i] for i in group},
            run,
            model,
            message,
            gate,
        )
        for n, group in enumerate(groups)
    ]
    return await _finish(run, jobs, deadline, started)


async def _finish(run: Run, jobs: list, deadline: float, started: float) -> Run:
    """Await the run's clients until ``deadline`` (s); a trace still open then timed out."""
    try:
        await asyncio.wait_for(asyncio.gather(*jobs), deadline)
    except TimeoutError:
        for trace in run.traces:
            if not trace.done:
                trace.error = trace.error or "timed out"
    run.wall_s = time.monotonic() - started
    return run


class Gate:
    """Holds ``parties`` clients until all of them are connected (0: never holds)."""

    def __init__(self, parties: int) -> None:
        self.waiting = parties
        self.arrived: set[int] = set()
        self.open = asyncio.Event()
        if parties == 0:
            self.open.set()

    async def arrive(self, key: int) -> None:
        self._count(key)
        await self.open.wait()

    def leave(self, key: int) -> None:
        """A client that failed before arriving must not hold the others."""
        self._count(key)

    def _count(self, key: int) -> None:
        if key not in self.arrived:
            self.arrived.add(key)
            self.waiting -= 1
            if self.waiting <= 0:
                self.open.set()


async def _socket(
    url: str, traces: dict[str, Trace], run: Run, model: str | None, message: str, gate: Gate
) -> None:
    try:
        await _socket_session(url, traces, run, model, message, gate)
    except (OSError, websockets.ConnectionClosed) as exc:
        gate.leave(id(traces))
        # The server closed or refused the socket: its unfinished turns count as errors.
        for trace in traces.values():
            if not trace.done:
                trace.error = f"socket: {exc!r}"[:200]


async def _socket_session(
    url: str, traces: dict[str, Trace], run: Run, model: str | None, message: str, gate: Gate
) -> None:
    async with websockets.connect(
        url, max_size=None, compression=None, ping_interval=None, open_timeout=120
    ) as ws:
        await ws.recv()  # the surface catalog, sent on connect
        await gate.arrive(id(traces))
        for conversation_id, trace in traces.items():
            trace.sent = time.monotonic_ns()
            frame = {"type": "chat.send", "conversationId": conversation_id, "message": message}
            if model:
                frame["model"] = model
            await ws.send(json.dumps(frame))
        pending = len(traces)
        while True:
            try:
                raw = await asyncio.wait_for(ws.recv(), IDLE_TIMEOUT)
            except TimeoutError:
                # Events were lost (a full channel drops them) or the turns are stuck.
                for trace in traces.values():
                    if not trace.done:
                        trace.error = f"no event for {IDLE_TIMEOUT:g}s"
                return
            now = time.monotonic_ns()
            frame = json.loads(raw)
            kind = frame["type"]
            if kind == "chat.delta":
                event = frame["event"]
                trace = traces.get(event["conversationId"])
                if trace is None:
                    continue
                etype = event["type"]
                if etype == "text-delta":
                    trace.first_delta = trace.first_delta or now
                    trace.add(event["delta"], now, run)
                elif etype == "step-complete":
                    trace.ttft_ms = event.get("ttftMs")
                    trace.decode_ms = event.get("decodeMs")
                elif etype == "usage":
                    trace.output_tokens = event["usage"]["outputTokens"]
                elif etype == "error":
                    trace.error = event["message"]
                elif etype == "turn-sealed":
                    trace.done = True
                    pending -= 1
            elif kind == "chat.error":
                trace = traces.get(frame.get("conversationId", ""))
                if trace is not None and not trace.done:
                    trace.error, trace.done = frame["message"], True
                    pending -= 1
            if pending == 0:
                return

"""Shared parts of the reliability suite: the benchmark's stand-in as a fast model, the check
that a conversation's persisted log equals what a client saw live, and a ``POST /chat`` client
reading its NDJSON in a thread.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import httpx

from bench.standin import Schedule, StandinProcess


def standin_process() -> Iterator[str]:
    """Run the benchmark's model stand-in (``bench.standin``) fast; yields its base URL.

    Four tokens per answer, no time to first token, at a rate no test waits for; a prompt
    with ``bench.standin.TOOL_MARKER`` gets a ``list_files`` step first.
    """
    with StandinProcess(Schedule(rate=100_000, tokens=4, ttft=0)) as standin:
        yield f"http://127.0.0.1:{standin.port}"


def chunks_from_events(events: list[dict]) -> list[tuple[str, dict]]:
    """The (role, chunk) log a turn's live events imply (docs/protocol.md#4-the-turn: what must be persisted).

    The user message, then per step the assistant message (text deltas merged into one text
    chunk, tool calls and an error in stream order) followed by its tool results.
    """
    out: list[tuple[str, dict]] = []
    assistant: list[dict] = []
    results: list[dict] = []
    step_over = False

    def flush() -> None:
        nonlocal step_over
        out.extend(("assistant", chunk) for chunk in assistant)
        out.extend(("tool", chunk) for chunk in results)
        assistant.clear()
        results.clear()
        step_over = False

    for event in events:
        kind = event["type"]
        if kind in ("text-delta", "reasoning-delta", "tool-call") and step_over:
            flush()
        if kind in ("user-message", "steering"):
            out.append(("user", {"type": "text", "text": event["text"]}))
        elif kind in ("text-delta", "reasoning-delta"):
            chunk_type = "text" if kind == "text-delta" else "thinking"
            current = next((c for c in assistant if c["type"] == chunk_type), None)
            if current is None:
                assistant.append({"type": chunk_type, "text": event["delta"]})
            else:
                current["text"] += event["delta"]
        elif kind == "tool-call":
            assistant.append({"type": "tool-call", **_fields(event, "durationMs")})
        elif kind == "step-complete":
            step_over = True
        elif kind == "tool-result":
            results.append({"type": "tool-result", **_fields(event, "durationMs")})
        elif kind == "error":
            error = {"type": "error", "message": event["message"]}
            if "code" in event:
                error["code"] = event["code"]
            assistant.append(error)
        elif kind == "done":
            flush()
    return out


def _fields(event: dict, *drop: str) -> dict:
    skip = {"type", "conversationId", "turnId", *drop}
    return {key: value for key, value in event.items() if key not in skip}


def log_of(chunks: list[dict]) -> list[tuple[str, dict]]:
    """Persisted StoredChunks as (role, chunk), asserting seqs are 1-based and gap-free from
    the first one."""
    first = chunks[0]["seq"] if chunks else 1
    assert [c["seq"] for c in chunks] == list(range(first, first + len(chunks)))
    return [(c["role"], c["chunk"]) for c in chunks]


class Stream:
    """``POST /chat`` read line by line in a thread, as a client of the NDJSON stream would."""

    def __init__(self, url: str, headers: dict, conversation_id: str, message: str):
        self.events: list[dict] = []
        self.ended = threading.Event()
        self.status: int | None = None
        args = (url, headers, conversation_id, message)
        threading.Thread(target=self._read, args=args, daemon=True).start()

    def _read(self, url, headers, conversation_id, message) -> None:
        body = {"conversationId": conversation_id, "message": message}
        try:
            with (
                httpx.Client(base_url=url, headers=headers, timeout=120) as client,
                client.stream("POST", "/chat", json=body) as response,
            ):
                self.status = response.status_code
                for line in response.iter_lines():
                    if line.strip():
                        self.events.append(json.loads(line))
        finally:
            self.ended.set()

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    def saw(self, kind: str) -> bool:
        return kind in self.types()

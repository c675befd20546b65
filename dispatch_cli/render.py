"""How a turn and a history look in a terminal.

One ``Printer`` writes prose (the answer's text, and reasoning when asked) to one stream and
notes (tool calls, retries, errors) to another, which may be the same stream. Every write is
flushed, so a turn reads as it streams. A tool call is one line, ``→ read_file {"path": "a"}``,
finished with `` ✓ <first line of the result>`` (or ``✗`` for an error) when the result is
the next thing to show; otherwise the result gets its own line, ``✓ read_file: <first line>``
(several calls in one step, say). Prose and notes never share a line.
"""

from __future__ import annotations

import json
from typing import Any, TextIO

from dispatch_cli import metrics

WIDTH = 100  # tool inputs and result lines are cut here
DIM, UNDIM = "\x1b[2m", "\x1b[22m"


def one_line(value: Any, width: int = WIDTH) -> str:
    """The first non-blank line of ``value`` (JSON-encoded unless a str), cut to ``width``."""
    if not isinstance(value, str):
        value = json.dumps(value, ensure_ascii=False)
    line = next((line.strip() for line in value.splitlines() if line.strip()), "")
    return line if len(line) <= width else line[: width - 1] + "…"


def tool_input(value: Any) -> str:
    return one_line(json.dumps(value, ensure_ascii=False, separators=(", ", ": ")))


class _Stream:
    def __init__(self, file: TextIO) -> None:
        self.file = file
        self.open = False  # the last write ended mid-line

    def write(self, text: str) -> None:
        if text:
            self.file.write(text)
            self.file.flush()
            self.open = not text.endswith("\n")


class Printer:
    def __init__(
        self, out: TextIO, notes: TextIO, *, show_reasoning: bool = False, dim: bool = False
    ) -> None:
        self.prose = _Stream(out)
        self.notes = self.prose if notes is out else _Stream(notes)
        self.show_reasoning = show_reasoning
        self.dim = dim
        self._mode: str | None = None  # "text" or "reasoning" while prose is being written
        self._pending: str | None = None  # the tool call whose line waits for its result

    def text(self, delta: str) -> None:
        self._prose(delta, "text")

    def reasoning(self, delta: str) -> None:
        if self.show_reasoning:
            self._prose(f"{DIM}{delta}{UNDIM}" if self.dim else delta, "reasoning")

    def note(self, line: str, *, hold: bool = False) -> None:
        """A line of its own; ``hold`` leaves it open for a tool result."""
        self.end_lines()
        self.notes.write(line if hold else line + "\n")

    def tool_call(self, call_id: str, name: str, arguments: Any) -> None:
        self.note(f"→ {name} {tool_input(arguments)}", hold=True)
        self._pending = call_id

    def tool_result(self, call_id: str, name: str, content: Any, is_error: bool) -> None:
        mark = "✗" if is_error else "✓"
        first = one_line(content) or "(no output)"
        if self._pending == call_id:
            self._pending = None
            self.notes.write(f" {mark} {first}\n")
        else:
            self.note(f"{mark} {name}: {first}")

    def end_lines(self) -> None:
        """Finish any open line, so what comes next starts on a line of its own."""
        for stream in {id(s): s for s in (self.prose, self.notes)}.values():
            if stream.open:
                stream.write("\n")
        self._pending = None
        self._mode = None

    def _prose(self, delta: str, mode: str) -> None:
        if self._pending is not None or self._mode != mode:
            self.end_lines()
        self._mode = mode
        self.prose.write(delta)


class TurnView:
    """Shows a turn's AgentEvents (docs/protocol.md#2-chunks-and-the-log) as they arrive and remembers how it ended."""

    def __init__(self, printer: Printer) -> None:
        self.printer = printer
        self.turn_id: str | None = None
        self.reason: str | None = None  # done.reason
        self.sealed = False

    def show(self, event: dict) -> None:
        kind = event.get("type")
        p = self.printer
        if kind == "user-message":
            self.turn_id = event.get("turnId")
        elif kind == "text-delta":
            p.text(event.get("delta", ""))
        elif kind == "reasoning-delta":
            p.reasoning(event.get("delta", ""))
        elif kind == "tool-call":
            p.tool_call(event["toolCallId"], event["toolName"], event.get("input"))
        elif kind == "tool-result":
            p.tool_result(
                event["toolCallId"],
                event["toolName"],
                event.get("content"),
                bool(event.get("isError")),
            )
        elif kind == "provider-retry":
            delay = metrics.duration(event.get("delayMs", 0))
            p.note(f"↻ retrying (#{event.get('attempt')}) in {delay}: {one_line(event['message'])}")
        elif kind == "steering":
            p.note(f"» queued message: {one_line(event.get('text', ''))}")
        elif kind == "error":
            p.note(f"✗ error: {one_line(event.get('message', ''))}")
        elif kind == "compaction-start":
            p.note("⋯ compacting the conversation (it nears the model's context window)")
        elif kind == "compaction-done":
            p.note(f"✓ conversation compacted: {event.get('replacedMessages')} messages summarized")
        elif kind == "compaction-failed":
            p.note(f"✗ compaction failed: {one_line(event.get('message', ''))}")
        elif kind == "done":
            p.end_lines()
            self.reason = event.get("reason")
        elif kind == "turn-sealed":
            self.sealed = True


ROLE_NAMES = {"user": "you", "assistant": "assistant", "system": "system"}


def show_history(chunks: list[dict], printer: Printer) -> None:
    """A conversation's StoredChunks as a transcript: a ``── you`` / ``── assistant`` header
    where the speaker changes (tool results belong to the assistant), then its chunks."""
    speaker = None
    for stored in chunks:
        chunk = stored.get("chunk") or {}
        kind = chunk.get("type")
        role = str(stored.get("role"))
        role = "assistant" if role == "tool" else role
        if role != speaker and not (kind == "thinking" and not printer.show_reasoning):
            speaker = role
            printer.note(f"── {ROLE_NAMES.get(role, role)}")
        if kind in ("text", "system"):
            printer.text(chunk.get("text", ""))
            printer.end_lines()
        elif kind == "thinking":
            printer.reasoning(chunk.get("text", ""))
            printer.end_lines()
        elif kind == "tool-call":
            printer.tool_call(chunk["toolCallId"], chunk["toolName"], chunk.get("input"))
        elif kind == "tool-result":
            printer.tool_result(
                chunk["toolCallId"],
                chunk["toolName"],
                chunk.get("content"),
                bool(chunk.get("isError")),
            )
        elif kind == "error":
            printer.note(f"✗ error: {one_line(chunk.get('message', ''))}")
        elif kind == "compaction":
            printer.note(f"⋯ compacted: {chunk.get('replacedMessages')} messages summarized")
    printer.end_lines()

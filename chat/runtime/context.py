"""What a provider is sent, how many tokens that is, and where a compaction cuts.

Pure functions and small values, no I/O (docs/protocol.md#24-compaction and
#410-the-context-budget):

- ``request_messages``: the ONE place that assembles the messages of a provider request from
  the raw history: [the system prompt] + [the latest compaction summary] + [the messages after
  it]. Compaction messages stay in the log; only this view of it leaves them out.
- token estimates for providers that cannot count exactly (about four characters a token);
- ``Budget``: whether a request fits the model's window and whether it asks for compaction;
- ``cut_index``: where a compaction cuts the messages it summarizes from the ones it keeps.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from chat.runtime.types import Message, ToolSpec, WireChunk

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD_TOKENS = 4  # role markers and separators a chat template adds per message
# Kept verbatim at most this share of the window (or half the threshold, if lower), so that a
# compaction leaves room: summary + kept messages + the answer.
KEEP_SHARE = 0.4
# A summary may use at most this share of the window (and the configured maximum).
SUMMARY_SHARE = 0.2
# A tool result is cut to this many characters in the transcript a summary is written from.
TRANSCRIPT_RESULT_CHARS = 2000

SUMMARY_INTRO = (
    "This conversation was compacted to fit the model's context window. "
    "Summary of everything before the messages that follow:"
)
SUMMARY_SYSTEM = (
    "You summarize conversations between a user and an AI assistant. The summary replaces "
    "the conversation for the assistant, who continues it from the summary alone."
)
SUMMARY_TASK = (
    "Write a summary of the conversation above. Keep what the assistant needs to continue: "
    "the user's goals and requests, facts, names, numbers, decisions, file paths, results "
    "of tool calls, and what is still open. Write plain prose or short bullet points, no "
    "preamble."
)


def is_compaction(message: Message) -> bool:
    """Whether the message is a compaction summary in the log."""
    return any(chunk.get("type") == "compaction" for chunk in message.chunks)


@dataclass(frozen=True)
class Effective:
    """The part of a history a provider sees: the latest summary and the messages after it."""

    summary: str | None
    messages: list[Message]  # the kept messages of the latest compaction, then every later one
    up_to_seq: int = 0  # the seq the latest summary covers (0: no compaction yet)


def effective(history: Sequence[Message]) -> Effective:
    """The latest compaction's summary and the messages it did not replace.

    A compaction chunk records ``upToSeq``, the seq of the last chunk it summarizes: every
    message whose last chunk has a greater seq, or that is not stored yet, is kept. Older
    compaction messages are summarized by the newer one (a summary of a summary).
    """
    latest = next((m for m in reversed(history) if is_compaction(m)), None)
    if latest is None:
        return Effective(None, [m for m in history if not is_compaction(m)])
    chunk = next(c for c in latest.chunks if c.get("type") == "compaction")
    up_to = int(chunk.get("upToSeq") or 0)
    kept = [m for m in history if not is_compaction(m) and (m.seq is None or m.seq > up_to)]
    return Effective(str(chunk.get("summary", "")), kept, up_to)


def summary_message(summary: str) -> Message:
    """The summary as the provider gets it: a user message ahead of the kept messages."""
    return Message("user", [{"type": "text", "text": f"{SUMMARY_INTRO}\n\n{summary}"}])


def request_messages(history: Sequence[Message], *, system_prompt: str = "") -> list[Message]:
    """The messages of a provider request, from the raw history (not reconciled yet).

    [the system prompt, when set] + [the latest compaction summary] + [the messages after it].
    """
    view = effective(history)
    out: list[Message] = []
    if system_prompt:
        out.append(Message("system", [{"type": "system", "text": system_prompt}]))
    if view.summary is not None:
        out.append(summary_message(view.summary))
    out.extend(view.messages)
    return out


# ---------------------------------------------------------------- estimates


def estimate_text_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def _chunk_text(chunk: WireChunk) -> str:
    kind = chunk.get("type")
    if kind in ("text", "system"):
        return str(chunk.get("text", ""))
    if kind == "tool-call":
        return str(chunk.get("toolName", "")) + json.dumps(chunk.get("input", {}))
    if kind == "tool-result":
        content = chunk.get("content", "")
        return content if isinstance(content, str) else json.dumps(content)
    return ""  # thinking and errors are not sent back; compaction chunks never are


def estimate_message_tokens(message: Message) -> int:
    """About how many tokens a message takes in a request."""
    text = "".join(_chunk_text(chunk) for chunk in message.chunks)
    return MESSAGE_OVERHEAD_TOKENS + estimate_text_tokens(text)


def estimate_request_tokens(messages: Sequence[Message], tools: Sequence[ToolSpec] = ()) -> int:
    """About how many input tokens a request of these messages and tools takes."""
    tool_text = "".join(
        t.name + t.description + json.dumps(dict(t.parameters), default=str) for t in tools
    )
    return estimate_text_tokens(tool_text) + sum(estimate_message_tokens(m) for m in messages)


# ---------------------------------------------------------------- the budget


@dataclass(frozen=True)
class Budget:
    """A model's window and what a request may use of it.

    ``window`` None: unknown, every request fits and nothing is compacted automatically.
    ``threshold`` is the share of the window (0–1) at which a request asks for compaction
    (0: never automatically). ``reserve`` is the room an answer needs after the request.
    """

    window: int | None
    threshold: float = 0.85
    reserve: int = 0

    @classmethod
    def for_model(cls, window: int | None, threshold: float, max_tokens: int | None) -> Budget:
        """The answer's reserve: the configured ``max_tokens`` (at most half the window), else a
        small floor (256 tokens, or an eighth of a small window)."""
        if window is None:
            return cls(None, threshold, 0)
        floor = min(256, window // 8)
        reserve = min(max_tokens, window // 2) if max_tokens else floor
        return cls(window, threshold, reserve)

    def fits(self, tokens: int) -> bool:
        return self.window is None or tokens + self.reserve <= self.window

    def wants_compaction(self, tokens: int) -> bool:
        if self.window is None or self.threshold <= 0:
            return False
        return tokens >= self.threshold * self.window or not self.fits(tokens)

    def keep_tokens(self, overhead: int = 0) -> int | None:
        """The most tokens a compaction keeps verbatim (None: no limit): a share of the room
        the request's fixed part (``overhead``: tool descriptions, system prompt) leaves."""
        if self.window is None:
            return None
        share = min(KEEP_SHARE, self.threshold / 2) if self.threshold > 0 else KEEP_SHARE
        return int(max(0, self.window - overhead) * share)

    def summary_tokens(self, configured: int, overhead: int = 0) -> int:
        """The most tokens a summary may have: it goes into requests after ``overhead``."""
        if self.window is None:
            return configured
        room = max(0, self.window - overhead)
        return max(64, min(configured, int(room * SUMMARY_SHARE)))


def overflow_message(tokens: int, budget: Budget, model: str, why: str = "") -> str:
    """The error of a request that does not fit: its size, the window, and the way out."""
    assert budget.window is not None
    model_part = f" of {model}" if model else ""
    reason = f" ({why})" if why else ""
    return (
        f"the conversation needs about {tokens:,} tokens plus {budget.reserve:,} for the "
        f"answer, more than the {budget.window:,}-token context window{model_part}{reason}: "
        "compact the conversation, or switch to a model with a larger context window"
    )


# ---------------------------------------------------------------- the cut


def valid_cut(messages: Sequence[Message], index: int) -> bool:
    """Whether the kept part may start at ``index``: never at a tool message, which would part
    tool results from the calls they answer."""
    return 0 < index < len(messages) and messages[index].role != "tool"


def cut_index(
    messages: Sequence[Message],
    *,
    keep: int,
    keep_tokens: int | None = None,
    tokens: Callable[[Message], int] = estimate_message_tokens,
) -> int:
    """Where a compaction cuts: ``messages[:i]`` are summarized, ``messages[i:]`` kept verbatim.

    Keeps the last ``keep`` messages, fewer while they take more than ``keep_tokens``, and
    always the last message. The kept part never starts with a tool message, so a tool call
    and its result stay on one side. 0 means there is nothing to summarize.
    """
    boundaries = [i for i in range(1, len(messages)) if valid_cut(messages, i)]
    if not boundaries:
        return 0
    wanted = len(messages) - keep
    # The first boundary at or after the wanted one, else the last there is; 0 keeps all.
    index = 0 if wanted <= 0 else next((i for i in boundaries if i >= wanted), boundaries[-1])
    if keep_tokens is not None:
        kept = sum(tokens(m) for m in messages[index:])
        for later in (i for i in boundaries if i > index):
            if kept <= keep_tokens:
                break
            kept -= sum(tokens(m) for m in messages[index:later])
            index = later
    return index


# ---------------------------------------------------------------- the summary's input


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]}\n[… {len(text) - limit:,} characters left out …]\n{text[-half:]}"


def _line(role: str, chunk: WireChunk) -> str | None:
    kind = chunk.get("type")
    if kind == "text" and chunk.get("text"):
        return f"{'User' if role == 'user' else 'Assistant'}: {chunk['text']}"
    if kind == "tool-call":
        arguments = json.dumps(chunk.get("input", {}), ensure_ascii=False)
        return f"Assistant called the tool {chunk.get('toolName')} with {arguments}"
    if kind == "tool-result":
        content: Any = chunk.get("content", "")
        text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
        failed = " (failed)" if chunk.get("isError") else ""
        return (
            f"Tool {chunk.get('toolName')} returned{failed}: {_clip(text, TRANSCRIPT_RESULT_CHARS)}"
        )
    return None  # thinking and errors are not summarized


def transcript(messages: Sequence[Message]) -> str:
    """The messages as plain text, one paragraph per chunk (what a summary is written from)."""
    lines = [
        line
        for message in messages
        for chunk in message.chunks
        if (line := _line(message.role, chunk)) is not None
    ]
    return "\n\n".join(lines)


def summary_prompt(previous: str | None, body: str) -> str:
    """The user message asking for a summary of ``body`` (after ``previous``, if any)."""
    parts = []
    if previous:
        parts.append(f"<earlier-summary>\n{previous}\n</earlier-summary>")
    parts.append(f"<conversation>\n{body}\n</conversation>")
    task = SUMMARY_TASK
    if previous:
        task += " Fold the earlier summary into it: yours replaces both."
    parts.append(task)
    return "\n\n".join(parts)


def summary_messages(previous: str | None, body: str) -> list[Message]:
    return [
        Message("system", [{"type": "text", "text": SUMMARY_SYSTEM}]),
        Message("user", [{"type": "text", "text": summary_prompt(previous, body)}]),
    ]

"""A conversation as a file: the JSON document (export and import) and readable Markdown.

The JSON document (``format`` ``dispatch.conversation``, ``version`` 1) holds the whole log
with seqs, message ordinals and turn ids, the turns with their TurnMetrics, the settings and
the system prompt (docs/protocol.md, export and import)::

    {"format": "dispatch.conversation", "version": 1, "exportedAt": "…",
     "conversation": {"id", "title", "model", "reasoningEffort", "cwd", "createdAt",
                      "lastActivityAt", "systemPrompt": {"template", "prompt"},
                      "forkedFrom": {"conversationId", "seq"} | null},
     "turns": [{"turnId", "status", "startedAt", "endedAt", "finishReason", "model",
                "metrics": TurnMetrics | null}],
     "chunks": [{"seq", "message", "role", "turnId", "chunk"}]}

``DocumentIn`` is the same shape as an import reads it, strictly: every problem is reported
as ``<where>: <problem>`` (e.g. ``chunks[3].chunk.type: unknown chunk type 'x'``).
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from django.utils import timezone
from pydantic import BaseModel, ConfigDict, Field, StrictStr, model_validator

from chat.models import Chunk, Conversation, Turn
from chat.runtime.types import CHUNK_TYPES, ROLES, TurnMetrics
from chat.transcript import turns_from_history
from metrics.selectors import conversation_turn_metrics

FORMAT = "dispatch.conversation"
VERSION = 1
MAX_CHUNKS = 1_000_000
MAX_TURNS = 200_000


# ---------------------------------------------------------------- export


def export_document(*, conversation: Conversation) -> dict:
    """The conversation's JSON document (its committed log: a running turn's finished steps
    are in it, that turn has no metrics yet)."""
    metrics = {m.turn_id: m for m in conversation_turn_metrics(conversation_id=conversation.id)}
    turns = [
        {
            "turnId": turn.id,
            "status": turn.status,
            "startedAt": turn.started_at.isoformat(),
            "endedAt": turn.ended_at.isoformat() if turn.ended_at else None,
            "finishReason": turn.finish_reason,
            "model": turn.model,
            "metrics": metrics[turn.id].to_wire() if turn.id in metrics else None,
        }
        for turn in Turn.objects.filter(conversation=conversation).order_by("started_at", "id")
    ]
    rows = (
        Chunk.objects.filter(conversation=conversation)
        .order_by("seq")
        .values_list("seq", "message", "role", "turn_id", "payload")
    )
    forked = None
    if conversation.forked_from_id:
        forked = {"conversationId": conversation.forked_from_id, "seq": conversation.forked_at_seq}
    return {
        "format": FORMAT,
        "version": VERSION,
        "exportedAt": timezone.now().isoformat(),
        "conversation": {
            "id": conversation.id,
            "title": conversation.title,
            "model": conversation.model,
            "reasoningEffort": conversation.reasoning_effort,
            "cwd": conversation.cwd,
            "createdAt": conversation.created_at.isoformat(),
            "lastActivityAt": conversation.last_activity_at.isoformat(),
            "systemPrompt": {
                "template": conversation.system_prompt_template,
                "prompt": conversation.system_prompt,
            },
            "forkedFrom": forked,
        },
        "turns": turns,
        "chunks": [
            {"seq": seq, "message": message, "role": role, "turnId": turn_id, "chunk": payload}
            for seq, message, role, turn_id, payload in rows
        ],
    }


def export_json(*, conversation: Conversation) -> str:
    return json.dumps(export_document(conversation=conversation), ensure_ascii=False, indent=1)


def export_markdown(*, conversation: Conversation) -> str:
    """The conversation as readable Markdown: each turn's messages, thinking and tool calls
    folded (``<details>``), error chunks as quotes, and the metrics rows the web app shows."""
    rows = [
        {**row, "chunk": row["payload"]}
        for row in Chunk.objects.filter(conversation=conversation)
        .order_by("seq")
        .values("seq", "turn_id", "message", "role", "payload")
    ]
    metrics = {m.turn_id: m for m in conversation_turn_metrics(conversation_id=conversation.id)}
    numbers = dict(Turn.objects.filter(conversation=conversation).values_list("id", "number"))
    turns = turns_from_history(rows, metrics, numbers)
    out = [f"# {conversation.title or 'Untitled conversation'}", ""]
    out.append(f"- Conversation: `{conversation.id}`")
    if conversation.model:
        out.append(f"- Model: `{conversation.model}`")
    out.append(f"- Exported: {timezone.now().strftime('%Y-%m-%d %H:%M %Z')}")
    if conversation.forked_from_id:
        out.append(
            f"- Forked from `{conversation.forked_from_id}` before seq {conversation.forked_at_seq}"
        )
    out.append("")
    if conversation.system_prompt:
        out += ["<details><summary>System prompt</summary>", ""]
        out += [_fenced(conversation.system_prompt, "text"), "", "</details>", ""]
    for turn in turns:
        if turn.kind == "compaction" and not any(b.kind == "user" for b in turn.blocks):
            out += ["## Compaction", ""]
        else:
            heading = f"## Turn {turn.number}" if turn.number else "## Turn"
            more = " (continues the answer above)" if turn.continuation else ""
            out += [heading + more, ""]
        for block in turn.blocks:
            if block.kind == "compaction":
                how = "automatically" if block.trigger == "auto" else "on request"
                out += [f"**Conversation compacted** ({how}, {block.replaced} messages summarized)"]
                out += ["", "<details><summary>Summary</summary>", "", block.summary, ""]
                out += ["</details>", ""]
                continue
            if block.kind == "user":
                label = "**User** (steering)" if block.steering else "**User**"
                out += [label, "", block.text, ""]
                out += [f"*Attached: {a.label}*" for a in block.attachments]
                out += [""] if block.attachments else []
                continue
            out += ["**Assistant**", ""]
            for item in block.items:
                out += _item_markdown(item)
            if block.row:
                out += [f"*{block.row['text']}*", ""]
        if turn.row:
            out += [f"*{turn.row['text']}*", ""]
    return "\n".join(out).rstrip() + "\n"


def _item_markdown(item) -> list[str]:
    if item.kind == "text":
        return [item.text, ""]
    if item.kind == "thinking":
        return ["<details><summary>Thinking</summary>", "", item.text, "", "</details>", ""]
    if item.kind == "error":
        return [f"> **Error:** {item.text}", ""]
    if item.kind == "tools":
        lines = []
        for card in item.cards:
            mark = "✗" if card.is_error else "✓"
            lines += [f"<details><summary>Tool call: {card.name} {mark}</summary>", ""]
            lines += ["Input:", "", _fenced(card.input_json, "json"), ""]
            lines += ["Result:", "", _fenced(card.result or "", "text"), "", "</details>", ""]
        return lines
    return [f"*{item.text}*", ""] if item.text else []


def _fenced(text: str, language: str) -> str:
    """A code block that no run of backticks inside ``text`` can close."""
    fence = "`" * max(3, _longest_backticks(text) + 1)
    return f"{fence}{language}\n{text}\n{fence}"


def _longest_backticks(text: str) -> int:
    longest = current = 0
    for char in text:
        current = current + 1 if char == "`" else 0
        longest = max(longest, current)
    return longest


# ---------------------------------------------------------------- import: the document's shape


class _Strict(BaseModel):
    # Unknown fields are ignored (a newer export may carry more); known ones are strict.
    model_config = ConfigDict(strict=True, extra="ignore")


Text = Annotated[StrictStr, Field(max_length=10_000_000)]
Short = Annotated[StrictStr, Field(max_length=300)]
Count = Annotated[int, Field(ge=0, le=2**62)]


class UsageIn(_Strict):
    inputTokens: Count
    outputTokens: Count
    cacheReadTokens: Count | None = None
    cacheWriteTokens: Count | None = None


Ms = Annotated[float, Field(ge=0, le=1e12, strict=False)]


class StepMetricsIn(_Strict):
    stepId: Annotated[StrictStr, Field(max_length=80)]
    usage: UsageIn
    ttftMs: Ms | None = None
    decodeMs: Ms | None = None
    genTotalMs: Ms | None = None


class TurnMetricsIn(_Strict):
    turnId: Annotated[StrictStr, Field(max_length=64)]
    model: Short | None = None
    usage: UsageIn
    durationMs: Ms | None = None
    contextSize: Count | None = None
    finishReason: Annotated[StrictStr, Field(max_length=40)]
    steps: Annotated[list[StepMetricsIn], Field(max_length=10_000)]

    def typed(self) -> TurnMetrics:
        return TurnMetrics.from_wire(self.model_dump(exclude_none=True))


class TurnIn(_Strict):
    turnId: Annotated[StrictStr, Field(min_length=1, max_length=64)]
    status: Literal["sealed", "running"]
    finishReason: Annotated[StrictStr, Field(max_length=40)] = ""
    model: Short = ""
    metrics: TurnMetricsIn | None = None

    @model_validator(mode="after")
    def _same_turn(self) -> TurnIn:
        if self.metrics is not None and self.metrics.turnId != self.turnId:
            raise ValueError(f"metrics.turnId must be the turn's id {self.turnId!r}")
        return self


# Each chunk type's fields; types of CHUNK_TYPES without an entry here are carried as they are.
_TEXT = {"text": str}
CHUNK_FIELDS: dict[str, dict[str, Any]] = {
    "text": _TEXT,
    "thinking": _TEXT,
    "system": _TEXT,
    "tool-call": {"toolCallId": str, "toolName": str, "input": dict},
    "tool-result": {"toolCallId": str, "toolName": str, "content": str, "isError": bool},
    "error": {"message": str},
    # Attachments are described, never carried: an import's chunk names a file it does not
    # have (docs/decisions.md, attachments), and is shown with what it says of itself.
    "image": {"attachmentId": str},
    "file": {"attachmentId": str},
}
OPTIONAL_STRINGS = ("stepId", "code")


class ChunkIn(_Strict):
    seq: Annotated[int, Field(ge=1, le=2**62)]
    message: Annotated[int, Field(ge=1, le=2**62)]
    role: Literal[ROLES]  # type: ignore[valid-type]
    turnId: Annotated[StrictStr, Field(max_length=64)] = ""
    chunk: dict[str, Any]

    @model_validator(mode="after")
    def _chunk_shape(self) -> ChunkIn:
        kind = self.chunk.get("type")
        if not isinstance(kind, str) or kind not in CHUNK_TYPES:
            raise ValueError(
                f"chunk.type: unknown chunk type {kind!r} (known: {', '.join(CHUNK_TYPES)})"
            )
        for name, kind_of in CHUNK_FIELDS.get(kind, {}).items():
            value = self.chunk.get(name)
            if not isinstance(value, kind_of) or (kind_of is int and isinstance(value, bool)):
                raise ValueError(f"chunk.{name}: a {kind} chunk needs a {kind_of.__name__}")
        for name in OPTIONAL_STRINGS:
            if name in self.chunk and not isinstance(self.chunk[name], str):
                raise ValueError(f"chunk.{name}: must be a string")
        return self


class SystemPromptIn(_Strict):
    template: Text | None = None
    prompt: Text = ""


class ForkedFromIn(_Strict):
    conversationId: Annotated[StrictStr, Field(max_length=128)]
    seq: Annotated[int, Field(ge=1, le=2**62)] | None = None


class ConversationIn(_Strict):
    title: Annotated[StrictStr, Field(max_length=200)] = ""
    model: Short = ""
    reasoningEffort: Literal["low", "medium", "high", "xhigh", "max"] = "high"
    cwd: Annotated[StrictStr, Field(max_length=1000)] = ""
    systemPrompt: SystemPromptIn = SystemPromptIn()
    forkedFrom: ForkedFromIn | None = None


class DocumentIn(_Strict):
    format: Literal["dispatch.conversation"]
    version: int
    conversation: ConversationIn
    turns: Annotated[list[TurnIn], Field(max_length=MAX_TURNS)] = []
    chunks: Annotated[list[ChunkIn], Field(max_length=MAX_CHUNKS)] = []

    @model_validator(mode="after")
    def _log_rules(self) -> DocumentIn:
        if self.version != VERSION:
            raise ValueError(
                f"version: unsupported version {self.version!r} (this server reads {VERSION})"
            )
        turn_ids = [t.turnId for t in self.turns]
        if len(set(turn_ids)) != len(turn_ids):
            raise ValueError("turns: a turnId appears twice")
        known = set(turn_ids)
        ordinal, role, turn = 0, "", ""
        for index, chunk in enumerate(self.chunks):
            where = f"chunks[{index}]"
            if chunk.seq != index + 1:
                raise ValueError(
                    f"{where}.seq: expected {index + 1} (seqs are 1, 2, 3 … with no gap)"
                )
            if chunk.turnId and chunk.turnId not in known:
                raise ValueError(f"{where}.turnId: names no turn of the document")
            if chunk.message == ordinal:
                if chunk.role != role or chunk.turnId != turn:
                    raise ValueError(f"{where}.message: one message has one role and one turn")
            elif chunk.message != ordinal + 1:
                raise ValueError(
                    f"{where}.message: expected {ordinal} or {ordinal + 1} "
                    "(message ordinals count up from 1)"
                )
            ordinal, role, turn = chunk.message, chunk.role, chunk.turnId
        return self


def parse_document(raw: bytes) -> DocumentIn:
    """The import document in ``raw``; ValueError naming the first problem."""
    try:
        data = json.loads(raw)
    except RecursionError:
        raise ValueError("the file is nested too deeply") from None
    except (ValueError, UnicodeDecodeError):
        raise ValueError("the file is not JSON (export a conversation as JSON first)") from None
    if not isinstance(data, dict):
        raise ValueError("the file is not a Dispatch conversation export (expected an object)")
    if data.get("format") != FORMAT:
        raise ValueError(f"format: expected {FORMAT!r} (a Dispatch conversation export)")
    return DocumentIn.model_validate(data)

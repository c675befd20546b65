"""The transcript as a view model, built from the log (history) or from a live turn's events.

One model, two builders, one set of templates: a turn rendered while it streams and the same
turn rendered from the database after a reload look the same. A turn is a list of blocks (the
user's bubbles and the steps); a step is a list of items (thinking, text, one tool batch,
errors) in the order they first appeared, which is the order the runtime persists them in.
"""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote

from django.utils.html import strip_tags

from chat.render import markdown_html
from chat.runtime.attachments import ATTACHMENT_TYPES, format_bytes
from chat.runtime.types import StepMetrics, TurnMetrics, Usage
from metrics.format import compaction_row, step_row, turn_row

_UNSAFE_ID = re.compile(r"[^A-Za-z0-9_-]")


def dom_id(*parts: object) -> str:
    """A DOM id made of ``parts``: anything outside ``[A-Za-z0-9_-]`` becomes ``_``."""
    return _UNSAFE_ID.sub("_", "-".join(str(p) for p in parts))


@dataclass
class ToolCard:
    call_id: str
    name: str
    input: Any
    output: str = ""
    result: str | None = None
    is_error: bool = False
    duration_ms: float | None = None

    @property
    def dom(self) -> str:
        return dom_id("tool", self.call_id)

    @property
    def running(self) -> bool:
        return self.result is None

    @property
    def input_json(self) -> str:
        return json.dumps(self.input, indent=2, ensure_ascii=False)

    @property
    def input_summary(self) -> str:
        text = json.dumps(self.input, ensure_ascii=False)
        return text if len(text) <= 80 else text[:79] + "…"


@dataclass
class Item:
    """One piece of a step: ``thinking``, ``text``, ``tools`` (a batch), ``error``, ``system``.

    ``fence``: a code fence the text continues (a continuation of an answer cut inside a code
    block), rendered before it so the Markdown reads as one; ``code``: an error's code.
    """

    kind: str
    text: str = ""
    done: bool = True  # thinking: finished ("Thoughts") or still streaming ("Thinking…")
    cards: list[ToolCard] = field(default_factory=list)
    code: str = ""
    fence: str = ""
    _html: tuple[str, str] | None = None

    @property
    def html(self) -> str:
        """The text as sanitized Markdown, rendered once per distinct text."""
        source = f"{self.fence}\n{self.text}" if self.fence else self.text
        if self._html is None or self._html[0] != source:
            self._html = (source, markdown_html(source))
        return self._html[1]

    @property
    def context_overflow(self) -> bool:
        """An error that compacting the conversation may cure (the page offers Compact)."""
        return self.code == "context-overflow"


@dataclass
class AttachmentView:
    """An ``image`` or ``file`` chunk of a user message, as the page shows it: a thumbnail that
    opens the image, or a chip with the file's name and size. An image the conversation no
    longer has (an imported log) shows its name only."""

    kind: str
    attachment_id: str
    name: str
    media_type: str = ""
    size: int | None = None
    width: int | None = None
    height: int | None = None
    path: str = ""
    available: bool = True
    description: str = ""  # written by a vision model for models without vision
    described_by: str = ""

    @classmethod
    def from_chunk(
        cls, chunk: Mapping[str, Any], known: Mapping[str, tuple[str, str]] | None = None
    ) -> AttachmentView:
        """``known``: the conversation's attachments (id → description, described by); None
        when every attachment is (a live turn's, just sent)."""
        attachment_id = str(chunk.get("attachmentId") or "")
        description, described_by = (known or {}).get(attachment_id, ("", ""))
        return cls(
            kind="file" if chunk.get("type") == "file" else "image",
            attachment_id=attachment_id,
            name=str(chunk.get("name") or "unnamed"),
            media_type=str(chunk.get("mediaType") or ""),
            size=chunk.get("size") if isinstance(chunk.get("size"), int) else None,
            width=chunk.get("width") if isinstance(chunk.get("width"), int) else None,
            height=chunk.get("height") if isinstance(chunk.get("height"), int) else None,
            path=str(chunk.get("path") or ""),
            available=known is None or attachment_id in known,
            description=description,
            described_by=described_by,
        )

    @property
    def url(self) -> str:
        return f"/attachments/{quote(self.attachment_id, safe='')}/content"

    @property
    def size_label(self) -> str:
        return format_bytes(self.size)

    @property
    def label(self) -> str:
        """``image cat.png (PNG · 640×480 · 12 KiB)``, a file with where it was saved."""
        label = f"{self.kind} {self.name} ({self.details})"
        return f"{label} → {self.path}" if self.kind == "file" and self.path else label

    @property
    def details(self) -> str:
        """``PNG · 640×480 · 12 KiB``."""
        kind = self.media_type.partition("/")[2].upper() if self.kind == "image" else ""
        dimensions = f"{self.width}×{self.height}" if self.width and self.height else ""
        return " · ".join(part for part in (kind, dimensions, self.size_label) if part)


@dataclass
class UserBlock:
    text: str
    steering: bool = False
    kind: str = "user"
    continuation: bool = False  # a Continue's prompt: not shown, the answers read as one
    attachments: list[AttachmentView] = field(default_factory=list)
    seq: int | None = None  # of its first chunk, once it is in the log (forks start here)


@dataclass
class Step:
    dom: str
    items: list[Item] = field(default_factory=list)
    row: dict | None = None  # the metrics row, only for a step that ran tools
    step_id: str = ""
    kind: str = "step"
    seq: int | None = None  # the seq of its first chunk (None while it streams)

    def item(self, kind: str) -> Item:
        """The step's item of that kind, created (appended) on first use."""
        for item in self.items:
            if item.kind == kind:
                return item
        item = Item(kind)
        self.items.append(item)
        return item

    @property
    def has_tools(self) -> bool:
        return any(item.kind == "tools" for item in self.items)


FAILED_FINISHES = frozenset({"error", "interrupted"})
WAITING_LABELS = {"reading": "Reading the prompt", "queued": "Waiting for the model"}


@dataclass
class CompactionBlock:
    """A compaction in the transcript: a divider "conversation compacted" with its summary
    (docs/protocol.md#24-compaction); while it runs, a progress line; failed, the reason."""

    dom: str
    state: str = "done"  # running | done | failed
    trigger: str = "auto"
    summary: str = ""
    replaced: int = 0
    kept: int = 0
    message: str = ""  # why it failed
    step_id: str = ""
    row: dict | None = None  # its model call's metrics
    kind: str = "compaction"
    seq: int | None = None
    _html: tuple[str, str] | None = None

    @property
    def html(self) -> str:
        if self._html is None or self._html[0] != self.summary:
            self._html = (self.summary, markdown_html(self.summary))
        return self._html[1]


Block = UserBlock | Step | CompactionBlock


@dataclass
class TurnView:
    turn_id: str
    number: int | None = None
    blocks: list[Block] = field(default_factory=list)
    row: dict | None = None
    retry: str = ""
    running: bool = False
    kind: str = "turn"  # or "compaction": a manual compaction
    continuation: bool = False  # it continues the answer before it
    continued: bool = False  # the next turn continues its answer
    first_seq: int | None = None
    last_seq: int | None = None
    part: int | None = None  # a window shows it from this seq on (a turn cut at a step)
    finish_reason: str = ""
    # While a step waits for its first output: "reading" (the model reads the prompt) or
    # "queued" (it waits for capacity), since ``waiting_since`` (time.monotonic()).
    waiting: str = ""
    waiting_since: float = 0.0
    prompt_progress: tuple[int, int] | None = None  # (done, total) prompt tokens read

    @property
    def progress_text(self) -> str:
        """``45% of 2,270 tokens`` while the model reports how far it read the prompt."""
        if self.waiting != "reading" or not self.prompt_progress:
            return ""
        done, total = self.prompt_progress
        return f"{done * 100 // max(total, 1)}% of {total:,} tokens"

    @property
    def dom(self) -> str:
        if self.part is not None:  # its earlier part may be on the page too: another id
            return dom_id("turn", self.turn_id or "log", "from", self.part)
        return dom_id("turn", self.turn_id or "log")

    @property
    def cut(self) -> bool:
        """The answer stopped at the length limit and was not continued: the page says so
        and offers Continue (docs/protocol.md#411-continue)."""
        return self.finish_reason == "length" and not self.continued

    @property
    def prompt_seq(self) -> int | None:
        """The seq of the turn's user message (what Regenerate forks before)."""
        first = self.blocks[0] if self.blocks else None
        return first.seq if isinstance(first, UserBlock) and not first.steering else None

    def failed(self) -> bool:
        return self.finish_reason in FAILED_FINISHES

    @property
    def waiting_label(self) -> str:
        return WAITING_LABELS.get(self.waiting, "")

    @property
    def waiting_ms(self) -> int:
        """How long the turn has waited so far (the page counts on from there)."""
        return round((time.monotonic() - self.waiting_since) * 1000) if self.waiting else 0

    def _texts(self) -> list[Item]:
        return [
            item
            for block in self.blocks
            if isinstance(block, Step)
            for item in block.items
            if item.kind == "text" and item.text.strip()
        ]

    @property
    def answer_markdown(self) -> str:
        """The answer's text as the model wrote it (Markdown): its steps' texts, in order."""
        return "\n\n".join(item.text.strip() for item in self._texts())

    def announcement(self, limit: int = 2000) -> str:
        """What a screen reader is told once the turn ended: its answer as plain text, or
        how it ended when it did not finish."""
        text = " ".join(" ".join(html.unescape(strip_tags(i.html)).split()) for i in self._texts())
        if len(text) > limit:
            text = text[: limit - 1] + "…"
        errors = [
            item.text
            for block in self.blocks
            if isinstance(block, Step)
            for item in block.items
            if item.kind == "error"
        ]
        parts = [f"Answer: {text}" if text else "The turn ended without an answer."]
        if errors:
            parts.append(f"Error: {errors[-1]}")
        if self.finish_reason == "aborted":
            parts.append("(stopped)")
        return " ".join(parts)

    def new_step(self) -> Step:
        count = sum(1 for block in self.blocks if block.kind == "step")
        step = Step(dom_id(self.dom, "s", count))
        self.blocks.append(step)
        return step

    def new_compaction(self) -> CompactionBlock:
        count = sum(1 for block in self.blocks if block.kind == "compaction")
        block = CompactionBlock(dom_id(self.dom, "c", count))
        self.blocks.append(block)
        return block

    def last_text(self) -> Item | None:
        """The last text item of its last step (what a continuation continues)."""
        for block in reversed(self.blocks):
            if isinstance(block, Step):
                texts = [item for item in block.items if item.kind == "text"]
                return texts[-1] if texts else None
        return None

    def first_text(self) -> Item | None:
        for block in self.blocks:
            if isinstance(block, Step):
                return block.items[0] if block.items and block.items[0].kind == "text" else None
        return None


def open_fence(text: str) -> str:
    """The opening line of a fenced code block ``text`` ends inside of, else ""."""
    fence = ""
    for line in text.splitlines():
        stripped = line.lstrip()
        marker = stripped[:3]
        if marker in ("```", "~~~"):
            if not fence:
                fence = stripped
            elif stripped.startswith(fence[:3]) and not stripped[3:].strip():
                fence = ""
    return fence


# ---------------------------------------------------------------------- from the log


def turns_from_history(
    rows: list[dict],
    metrics: dict[str, TurnMetrics],
    numbers: dict[str, int | None],
    attachments: Mapping[str, tuple[str, str]] | None = None,
    *,
    previous_text: str = "",
) -> list[TurnView]:
    """Turns from log rows ``{seq, turn_id, message, role, chunk}`` (ascending seq), the
    sealed turns' TurnMetrics by id and the turns' numbers (None: a compaction turn).

    ``attachments``: the conversation's attachments, id → (description, described by); an
    attachment chunk naming another id shows as no longer available. ``previous_text`` is the
    answer before the first row, for a first turn that continues it.
    """
    turns: list[TurnView] = []
    cards: dict[str, ToolCard] = {}
    turn: TurnView | None = None
    message = None
    block: Block | None = None
    for row in rows:
        if turn is None or row["turn_id"] != turn.turn_id:
            turn = TurnView(row["turn_id"], first_seq=row.get("seq"))
            # A turn begins with its prompt (or a compaction): else this is a later part.
            if row["role"] != "user" and row["chunk"].get("type") != "compaction":
                turn.part = row.get("seq")
            turns.append(turn)
            message = None
        turn.last_seq = row.get("seq")
        if row["message"] != message:
            message = row["message"]
            block = _open_block(turn, row["role"], row["chunk"])
            if block is not None:
                block.seq = row.get("seq")
        _add_chunk(turn, block, row["chunk"], cards, attachments or {})
    for turn in turns:
        turn.number = numbers.get(turn.turn_id)
        turn_metrics = metrics.get(turn.turn_id)
        if turn_metrics is not None:
            turn.kind = turn_metrics.kind
            _attach_metrics(turn, turn.number, turn_metrics)
    _join_continuations(turns, previous_text)
    return turns


def _join_continuations(turns: list[TurnView], previous_text: str) -> None:
    """A continuation reads as the rest of the answer before it: that answer's cut notice
    goes, and a code block it was cut inside goes on in the continuation's text."""
    before: Item | None = Item("text", previous_text) if previous_text else None
    for turn in turns:
        if turn.continuation:
            first = turn.first_text()
            if first is not None and before is not None:
                first.fence = open_fence(f"{before.fence}\n{before.text}")
        before = turn.last_text() or before
    for earlier, later in zip(turns, turns[1:], strict=False):
        earlier.continued = later.continuation


def _open_block(turn: TurnView, role: str, chunk: dict) -> Block | None:
    if chunk.get("type") == "compaction":
        return turn.new_compaction()
    if role == "user":
        continuation = bool(chunk.get("continuation"))
        block = UserBlock("", steering=bool(turn.blocks), continuation=continuation)
        turn.continuation = turn.continuation or (continuation and not turn.blocks)
        turn.blocks.append(block)
        return block
    if role == "tool":
        return None  # results attach to their cards
    return turn.new_step()


def _add_chunk(
    turn: TurnView,
    block: Block | None,
    chunk: dict,
    cards: dict[str, ToolCard],
    attachments: Mapping[str, tuple[str, str]],
) -> None:
    kind = chunk.get("type")
    if isinstance(block, CompactionBlock):
        block.summary = str(chunk.get("summary", ""))
        block.replaced = int(chunk.get("replacedMessages") or 0)
        block.kept = int(chunk.get("keptMessages") or 0)
        block.trigger = str(chunk.get("trigger", "auto"))
        block.step_id = str(chunk.get("stepId", ""))
    elif isinstance(block, UserBlock):
        if kind in ATTACHMENT_TYPES:
            block.attachments.append(AttachmentView.from_chunk(chunk, attachments))
        else:
            block.text += chunk.get("text", "")
    elif kind == "tool-result":
        card = cards.get(chunk.get("toolCallId", ""))
        if card is None:  # a result whose call is not in view: show it on its own card
            card = ToolCard(chunk.get("toolCallId", ""), chunk.get("toolName", ""), None)
            _last_step(turn).item("tools").cards.append(card)
        card.result = _content_text(chunk.get("content"))
        card.is_error = bool(chunk.get("isError"))
    elif isinstance(block, Step):
        if kind == "tool-call":
            card = ToolCard(chunk["toolCallId"], chunk["toolName"], chunk.get("input"))
            cards[card.call_id] = card
            block.item("tools").cards.append(card)
            block.step_id = block.step_id or chunk.get("stepId", "")
        elif kind in ("text", "thinking", "system"):
            block.item(kind).text += chunk.get("text", "")
        elif kind == "error":
            block.items.append(
                Item("error", text=chunk.get("message", ""), code=chunk.get("code", ""))
            )


def _last_step(turn: TurnView) -> Step:
    for block in reversed(turn.blocks):
        if isinstance(block, Step):
            return block
    return turn.new_step()


def _attach_metrics(turn: TurnView, number: int | None, metrics: TurnMetrics) -> None:
    turn.finish_reason = metrics.finish_reason
    if number is not None:
        turn.row = turn_row(metrics, number)
    answers = [step for step in metrics.steps if step.kind == "step"]
    positions = {step.step_id: (n, step) for n, step in enumerate(answers, start=1)}
    compactions = {step.step_id: step for step in metrics.steps if step.kind == "compaction"}
    for block in turn.blocks:
        if isinstance(block, Step) and block.has_tools and block.step_id in positions:
            n, step = positions[block.step_id]
            block.row = step_row(step, n)
        elif isinstance(block, CompactionBlock) and block.step_id in compactions:
            block.row = compaction_row(compactions[block.step_id])


def _content_text(content: Any) -> str:
    return content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)


# ---------------------------------------------------------------------- from live events

DELTAS = frozenset({"text-delta", "reasoning-delta", "tool-output"})
# Events that show a step's output has begun (or the turn is over): no more waiting.
_OUTPUT = frozenset({"text-delta", "reasoning-delta", "tool-call", "error", "done"})


class LiveTurn:
    """A running turn, folded from its AgentEvents, remembering what changed since the last
    ``take_changes()`` so only those parts are re-rendered and pushed."""

    def __init__(self, turn_id: str, number: int | None, *, fence: str = "") -> None:
        kind = "turn" if number is not None else "compaction"  # compaction turns have none
        self.view = TurnView(turn_id, number=number, running=True, kind=kind)
        self._fence = fence  # a code block the answer before this one was cut inside
        self._wait("reading")
        self._step: Step | None = None  # the step receiving content (None between steps)
        self._last_step: Step | None = None
        self._cards: dict[str, tuple[ToolCard, Step]] = {}
        self._compactions: dict[str, CompactionBlock] = {}
        self._usage: dict[str, Usage] = {}
        self._steps: list[StepMetrics] = []  # the steps completed so far
        self._all_steps: list[StepMetrics] = []  # … and the compactions' model calls
        self.context_size: int | None = None
        self.failure = ""  # why a compaction failed, when this is a compaction turn
        self._new = True
        self._appended: list[Block] = []
        self._dirty: list[Block] = []
        self._foot = False

    @property
    def turn_id(self) -> str:
        return self.view.turn_id

    def take_changes(self) -> tuple[bool, list, list[Block], bool]:
        """(whole turn is new, blocks appended, steps changed, foot changed); then forget them."""
        appended = list(self._appended)
        dirty = [s for s in self._dirty if not any(s is b for b in appended)]
        changes = (self._new, appended, dirty, self._foot)
        self._new, self._appended, self._dirty, self._foot = False, [], [], False
        return changes

    def _wait(self, what: str) -> None:
        """The turn waits for a step's first output (``""``: it does not)."""
        view = self.view
        if view.waiting == what:
            return
        if what and not view.waiting:
            view.waiting_since = time.monotonic()
            view.prompt_progress = None
        view.waiting, self._foot = what, True

    def _touch(self, block: Block) -> None:
        if not any(block is b for b in self._dirty):
            self._dirty.append(block)

    def _open_step(self) -> Step:
        if self._step is None:
            self._step = self.view.new_step()
            self._appended.append(self._step)
        return self._step

    def _text_item(self, step: Step) -> Item:
        item = step.item("text")
        if self._fence and self.view.continuation and item is step.items[0]:
            item.fence, self._fence = self._fence, ""  # only the continuation's first text
        return item

    def apply(self, event: dict) -> None:
        """Fold one AgentEvent into the view."""
        kind = event["type"]
        if self.view.retry and kind not in ("provider-retry", "usage"):
            self.view.retry, self._foot = "", True
        if kind in _OUTPUT:
            self._wait("")
        handler = getattr(self, "_on_" + kind.replace("-", "_"), None)
        if handler is not None:
            handler(event)

    def _on_user_message(self, event: dict) -> None:
        if not self.view.blocks:
            continuation = bool(event.get("continuation"))
            attachments = [AttachmentView.from_chunk(c) for c in event.get("attachments") or ()]
            self.view.continuation = continuation
            self.view.blocks.append(
                UserBlock(event["text"], continuation=continuation, attachments=attachments)
            )

    def _on_steering(self, event: dict) -> None:
        block = UserBlock(event["text"], steering=True)
        self.view.blocks.append(block)
        self._appended.append(block)
        self._step = None
        self._wait("reading")

    def _on_prompt_progress(self, event: dict) -> None:
        self.view.prompt_progress = (int(event["done"]), int(event["total"]))
        self._foot = True

    def _on_status(self, event: dict) -> None:
        if self.view.running and (self._step is None or self.view.waiting):
            self._wait("queued" if event.get("status") == "queued" else "reading")

    def _on_text_delta(self, event: dict) -> None:
        step = self._open_step()
        self._text_item(step).text += event["delta"]
        self._touch(step)

    def _on_reasoning_delta(self, event: dict) -> None:
        step = self._open_step()
        item = step.item("thinking")
        item.done = False
        item.text += event["delta"]
        self._touch(step)

    def _on_tool_call(self, event: dict) -> None:
        step = self._open_step()
        card = ToolCard(event["toolCallId"], event["toolName"], event.get("input"))
        step.item("tools").cards.append(card)
        step.step_id = event["stepId"]
        self._cards[card.call_id] = (card, step)
        self._touch(step)

    def _on_tool_output(self, event: dict) -> None:
        found = self._cards.get(event["toolCallId"])
        if found is not None:
            found[0].output += event["data"]
            self._touch(found[1])

    def _on_tool_result(self, event: dict) -> None:
        found = self._cards.get(event["toolCallId"])
        if found is None:
            return
        card, step = found
        card.result = _content_text(event.get("content"))
        card.is_error = bool(event.get("isError"))
        card.duration_ms = event.get("durationMs")
        self._touch(step)
        if all(not c.running for c in step.item("tools").cards):
            self._wait("reading")  # the step's tools are done: the next step reads its prompt

    def _on_usage(self, event: dict) -> None:
        self._usage[event["stepId"]] = Usage.from_wire(event["usage"])

    def _on_step_complete(self, event: dict) -> None:
        # step-complete carries the step's timings; its usage came before in a usage event.
        metrics = replace(
            StepMetrics.from_wire(event), usage=self._usage.get(event["stepId"], Usage())
        )
        self._steps.append(metrics)
        self._all_steps.append(metrics)
        step = self._step
        if step is None:
            return  # the step produced nothing to show
        for item in step.items:
            item.done = True
        if step.has_tools:
            step.row = step_row(metrics, len(self._steps))
        self._touch(step)
        self._last_step, self._step = step, None

    def _on_provider_retry(self, event: dict) -> None:
        seconds = f"{event['delayMs'] / 1000:g}s"
        self.view.retry = f"Retrying (#{event['attempt']}) in {seconds}…"
        self._foot = True

    def _on_error(self, event: dict) -> None:
        step = self._step or self._last_step or self._open_step()
        step.items.append(Item("error", text=event["message"], code=event.get("code", "")))
        self._touch(step)

    def _on_compaction_start(self, event: dict) -> None:
        block = self.view.new_compaction()
        block.state, block.trigger = "running", event.get("trigger", "auto")
        block.step_id = event.get("stepId", "")
        self._compactions[block.step_id] = block
        self._appended.append(block)
        self._step = None

    def _compaction_ended(self, event: dict, state: str) -> CompactionBlock:
        block = self._compactions.get(event.get("stepId", ""))
        if block is None:  # a manual compaction refused before it started
            block = self.view.new_compaction()
            self._appended.append(block)
        block.state = state
        metrics = replace(StepMetrics.from_wire(event), kind="compaction")
        if "stepId" in event:
            self._all_steps.append(metrics)
            block.row = compaction_row(metrics)
        self._touch(block)
        return block

    def _on_compaction_done(self, event: dict) -> None:
        block = self._compaction_ended(event, "done")
        block.summary = event.get("summary", "")
        block.replaced = event.get("replacedMessages", 0)
        block.kept = event.get("keptMessages", 0)
        self.context_size = event.get("contextSize", self.context_size)

    def _on_compaction_failed(self, event: dict) -> None:
        block = self._compaction_ended(event, "failed")
        block.message = event["message"]
        self.failure = event["message"]

    def _on_done(self, event: dict) -> None:
        for step in (self._step, self._last_step):
            if step is not None:
                for item in step.items:
                    item.done = True
                self._touch(step)
        self.view.running = False
        self.view.finish_reason = event["reason"]
        self._wait("")
        self.context_size = event.get("contextSize")
        metrics = TurnMetrics(
            turn_id=self.turn_id,
            finish_reason=event["reason"],
            usage=Usage.from_wire(event.get("usage") or {}),
            duration_ms=event["durationMs"],
            context_size=self.context_size,
            steps=tuple(self._all_steps),
        )
        if self.view.number is not None:
            self.view.row = turn_row(metrics, self.view.number)
        self._foot = True


# ---------------------------------------------------------------------- tabs


def id_prefixes(ids: list[str], minimum: int = 4) -> dict[str, str]:
    """For each id, its shortest prefix of at least ``minimum`` characters that no other id in
    ``ids`` starts with (the whole id when it is a prefix of another)."""
    prefixes = {}
    for conversation_id in ids:
        others = [other for other in ids if other != conversation_id]
        length = min(minimum, len(conversation_id))
        while length < len(conversation_id) and any(
            other.startswith(conversation_id[:length]) for other in others
        ):
            length += 1
        prefixes[conversation_id] = conversation_id[:length]
    return prefixes

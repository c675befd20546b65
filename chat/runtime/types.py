"""The runtime's vocabulary: messages, usage and metrics, provider events, tools.

Pure Python, no Django. Wire shapes (camelCase dicts) are built here and nowhere else: the
typed values (``Usage``, ``StepMetrics``, ``TurnMetrics``) have ``to_wire``/``from_wire``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Role = Literal["system", "user", "assistant", "tool"]
ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool")
# The chunk types of the log (docs/protocol.md#21-chunk-types): what an import accepts.
CHUNK_TYPES: tuple[str, ...] = (
    "text",
    "thinking",
    "tool-call",
    "tool-result",
    "error",
    "system",
    "image",
    "file",
)
WireChunk = dict[str, Any]
WireEvent = dict[str, Any]


# ---------------------------------------------------------------- messages, usage and metrics


@dataclass
class Message:
    """One message of a conversation: a role and its wire chunks (docs/protocol.md#2-chunks-and-the-log), in order."""

    role: Role
    chunks: list[WireChunk] = field(default_factory=list)
    # The seq of the message's last chunk once it is in the log (set by the persistence ports;
    # None until then). Compaction records up to which seq a summary covers.
    seq: int | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Usage:
    """Token usage. ``input_tokens`` is the whole prompt INCLUDING cached tokens.

    ``estimated``: the provider never reported this usage (its step was stopped or failed
    first), so ``output_tokens`` counts the tokens that streamed in and the input is unknown
    (0). A sum is estimated when any part is.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    estimated: bool = False

    def __add__(self, other: Usage) -> Usage:
        def add(a: int | None, b: int | None) -> int | None:
            return None if a is None and b is None else (a or 0) + (b or 0)

        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            add(self.cache_read_tokens, other.cache_read_tokens),
            add(self.cache_write_tokens, other.cache_write_tokens),
            self.estimated or other.estimated,
        )

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "inputTokens": self.input_tokens,
            "outputTokens": self.output_tokens,
        }
        if self.cache_read_tokens is not None:
            wire["cacheReadTokens"] = self.cache_read_tokens
        if self.cache_write_tokens is not None:
            wire["cacheWriteTokens"] = self.cache_write_tokens
        if self.estimated:
            wire["estimated"] = True
        return wire

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> Usage:
        return cls(
            wire.get("inputTokens", 0),
            wire.get("outputTokens", 0),
            wire.get("cacheReadTokens"),
            wire.get("cacheWriteTokens"),
            bool(wire.get("estimated", False)),
        )


@dataclass(frozen=True)
class StepMetrics:
    """One step's metrics (docs/protocol.md#2-chunks-and-the-log ``StepMetrics``): its usage and stream timings in ms.

    A timing is None when it is unknown: no ``ttft_ms``/``decode_ms`` for a step that streamed
    no token, none at all for a step whose stream never ran. ``kind`` is ``"compaction"`` for
    the model call that wrote a compaction summary (docs/protocol.md#24-compaction), else
    ``"step"``; only the former is on the wire.
    """

    step_id: str
    usage: Usage = Usage()
    ttft_ms: float | None = None
    decode_ms: float | None = None
    gen_total_ms: float | None = None
    kind: str = "step"

    def timing_wire(self) -> dict[str, float]:
        """The known timings, camelCase: the timing fields of ``step-complete`` too."""
        timings = (
            ("ttftMs", self.ttft_ms),
            ("decodeMs", self.decode_ms),
            ("genTotalMs", self.gen_total_ms),
        )
        return {key: value for key, value in timings if value is not None}

    def to_wire(self) -> dict[str, Any]:
        wire = {"stepId": self.step_id, "usage": self.usage.to_wire(), **self.timing_wire()}
        if self.kind != "step":
            wire["kind"] = self.kind
        return wire

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> StepMetrics:
        """Read the wire shape; a ``step-complete`` event (no ``usage``) reads as zero usage."""
        return cls(
            wire["stepId"],
            Usage.from_wire(wire.get("usage") or {}),
            wire.get("ttftMs"),
            wire.get("decodeMs"),
            wire.get("genTotalMs"),
            wire.get("kind", "step"),
        )


@dataclass(frozen=True)
class TurnMetrics:
    """One turn's metrics (docs/protocol.md#2-chunks-and-the-log ``TurnMetrics``), sealed with the turn.

    ``usage`` is the sum over the steps (compaction calls included); ``context_size`` the last
    step's input + output tokens (for a compaction turn: the compacted context's size);
    ``model`` the ``<credential>/<model>`` name (None when unknown). ``kind`` is
    ``"compaction"`` for a turn that only compacted the conversation, else ``"turn"``; only
    the former is on the wire.
    """

    turn_id: str
    finish_reason: str
    usage: Usage = Usage()
    model: str | None = None
    duration_ms: float | None = None
    context_size: int | None = None
    steps: tuple[StepMetrics, ...] = ()
    kind: str = "turn"

    def to_wire(self) -> dict[str, Any]:
        """The camelCase dict of the API, optional keys left out when None."""
        wire: dict[str, Any] = {"turnId": self.turn_id}
        if self.model is not None:
            wire["model"] = self.model
        wire["usage"] = self.usage.to_wire()
        if self.duration_ms is not None:
            wire["durationMs"] = self.duration_ms
        if self.context_size is not None:
            wire["contextSize"] = self.context_size
        wire["finishReason"] = self.finish_reason
        wire["steps"] = [step.to_wire() for step in self.steps]
        if self.kind != "turn":
            wire["kind"] = self.kind
        return wire

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> TurnMetrics:
        return cls(
            turn_id=wire["turnId"],
            finish_reason=wire["finishReason"],
            usage=Usage.from_wire(wire.get("usage") or {}),
            model=wire.get("model"),
            duration_ms=wire.get("durationMs"),
            context_size=wire.get("contextSize"),
            steps=tuple(StepMetrics.from_wire(step) for step in wire.get("steps") or ()),
            kind=wire.get("kind", "turn"),
        )


# ---------------------------------------------------------------- provider events

FinishReason = str  # "stop" | "length" | "tool-calls" | "content-filter" | provider-specific


@dataclass(frozen=True)
class TextDelta:
    """Answer text; ``tokens`` is how many streamed pieces (≈ tokens) it merges."""

    text: str
    tokens: int = 1


@dataclass(frozen=True)
class ReasoningDelta:
    """Reasoning text; ``tokens`` as for ``TextDelta``."""

    text: str
    tokens: int = 1


@dataclass(frozen=True)
class ToolCallReady:
    """A complete tool call parsed from the stream (arguments fully assembled)."""

    tool_call_id: str
    tool_name: str
    input: dict[str, Any]


@dataclass(frozen=True)
class UsageReport:
    usage: Usage
    # Provider-side timings when the server reports them (llama.cpp ``timings``), kept as is.
    timings: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Finish:
    reason: FinishReason


@dataclass(frozen=True)
class PromptProgress:
    """The model has read ``done`` of the ``total`` prompt tokens it had to evaluate (the
    embedded model reports it between its batches; a prompt read in one batch reports none)."""

    done: int
    total: int


@dataclass(frozen=True)
class StatusChange:
    """The provider is waiting for capacity (``queued``) or generating again (``active``)."""

    status: Literal["queued", "active"]


ProviderEvent = (
    TextDelta
    | ReasoningDelta
    | ToolCallReady
    | UsageReport
    | Finish
    | StatusChange
    | PromptProgress
)


class ProviderError(Exception):
    """Raised from a provider stream. ``retryable`` marks connection failures, 429 and 5xx."""

    def __init__(self, message: str, *, code: str | None = None, retryable: bool = False):
        super().__init__(message)
        self.message = message
        self.code = code
        self.retryable = retryable


@dataclass(frozen=True)
class ToolSpec:
    """What a provider is told about a tool: name, description and JSON-schema parameters."""

    name: str
    description: str
    parameters: Mapping[str, Any]


@dataclass
class ProviderRequest:
    model: str  # the provider-side model name (the part after the first "/")
    messages: list[Message]  # reconciled history, ending with the newest user/tool message
    tools: Sequence[ToolSpec] = ()
    reasoning_effort: str | None = None
    max_tokens: int | None = None


class Provider(Protocol):
    def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        """Stream one step. Raises ProviderError on failure. Closing the iterator cancels."""
        ...


# ---------------------------------------------------------------- tools


@dataclass(frozen=True)
class ToolOutcome:
    content: str
    is_error: bool = False


@dataclass
class ToolContext:
    cwd: str
    # Streams a running tool's output: (data, "stdout" | "stderr").
    emit_output: Callable[[str, str], Awaitable[None]]


class Tool(Protocol):
    spec: ToolSpec
    concurrency_safe: bool  # safe tools run in parallel; unsafe ones run alone

    async def run(self, input: dict[str, Any], ctx: ToolContext) -> ToolOutcome:
        """Run the tool. Failures are returned as ``ToolOutcome(is_error=True)``."""
        ...

"""``TurnObserver``: the port a turn reports its boundaries to, for metrics and traces.

The runtime calls an observer at a turn's start and end, around each step's model stream
(retries included) and around each tool execution — never per delta, so observing costs
nothing on the streaming path. The calls come in pairs (``step_started`` → ``step_ended``,
``tool_started`` → ``tool_ended``, ``turn_started`` → ``turn_ended``), each pair in one task,
so an observer may make something current in between (a tracing span). Every method of this
class does nothing: an observer overrides what it needs, and must not raise.
"""

from __future__ import annotations

from chat.runtime.types import (
    ProviderError,
    ProviderRequest,
    StepMetrics,
    ToolOutcome,
    TurnMetrics,
    WireChunk,
)


class TurnObserver:
    def turn_started(self) -> None:
        """The turn began (before its ``user-message`` event)."""

    def step_started(self, step_id: str, request: ProviderRequest) -> None:
        """The step is about to call the provider with ``request``."""

    def provider_retry(self, step_id: str, error: ProviderError, attempt: int) -> None:
        """The step's provider call failed with a retryable ``error``; attempt ``attempt``
        (1-based) follows after the backoff."""

    def step_ended(
        self, metrics: StepMetrics, finish_reason: str, error: ProviderError | None
    ) -> None:
        """The step's model stream ended (before its tools run). ``finish_reason`` is the
        provider's (``stop``, ``tool-calls``, ``length`` …), ``error`` when the provider gave up
        (``error`` set), or ``aborted`` when the turn was stopped during the stream."""

    def tool_started(self, step_id: str, call: WireChunk) -> None:
        """A tool call (a ``tool-call`` chunk) starts running; identical calls of one step run
        once, so they are observed once."""

    def tool_ended(
        self, step_id: str, call: WireChunk, outcome: ToolOutcome | None, duration_ms: float
    ) -> None:
        """The tool call finished with ``outcome``; None when it was cancelled (the turn was
        stopped)."""

    def turn_ended(self, metrics: TurnMetrics) -> None:
        """The turn ended with ``metrics`` (after ``turn-sealed``, or after a seal failed)."""


NO_OBSERVER = TurnObserver()

"""Prometheus metrics of this worker (prometheus-client's default registry).

Each worker counts its own turns, sockets and failures and serves them at ``/-/metrics``
(chat.observe.endpoint); Prometheus scrapes every worker and sums (docs/deploy.md). Nothing
here runs per delta: a turn's values are recorded at its step and tool boundaries through
``MetricsObserver``, with the turn's labelled children looked up once when it starts.

Label values are bounded: models come from the catalog, tools from the turn's tool set (a
name the model made up counts as ``(unknown)``), error codes from the providers, finish
reasons from the runtime.
"""

from __future__ import annotations

from collections.abc import Collection

from prometheus_client import Counter, Gauge, Histogram

from chat.runtime import (
    ProviderError,
    ProviderRequest,
    StepMetrics,
    ToolOutcome,
    TurnMetrics,
    TurnObserver,
)
from chat.runtime.types import WireChunk

# Seconds: from a local model's first token in tens of ms to a slow remote model's minutes.
LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
UNKNOWN_TOOL = "(unknown)"
SOCKET_KINDS = ("api", "webapp")

TURNS_STARTED = Counter("dispatch_turns_started", "Turns started by this worker.", ["model"])
TURNS_ENDED = Counter(
    "dispatch_turns_ended",
    "Turns ended, by their finish reason (done.reason); interrupted ones by the worker "
    "whose recovery sealed them.",
    ["model", "reason"],
)
TURNS_RUNNING = Gauge("dispatch_turns_running", "Turns running in this worker now.")
TOKENS = Counter(
    "dispatch_tokens",
    "Tokens by model and type: input (the whole prompt, cached tokens included), output, "
    "cache_read, cache_write.",
    ["model", "type"],
)
TTFT = Histogram(
    "dispatch_ttft_seconds",
    "Time to first token of a step (ttftMs).",
    ["model"],
    buckets=LATENCY_BUCKETS,
)
DECODE = Histogram(
    "dispatch_decode_seconds",
    "A step's decode time, first token to the stream's end (decodeMs).",
    ["model"],
    buckets=DURATION_BUCKETS,
)
STEP_DURATION = Histogram(
    "dispatch_step_duration_seconds",
    "A step's model stream, provider call to the stream's end (genTotalMs; tools excluded).",
    ["model"],
    buckets=DURATION_BUCKETS,
)
PROVIDER_ERRORS = Counter(
    "dispatch_provider_errors",
    "Provider failures that ended a step (retries exhausted or not retryable), by error code.",
    ["model", "code"],
)
PROVIDER_RETRIES = Counter(
    "dispatch_provider_retries", "Provider calls retried, by error code.", ["model", "code"]
)
TOOL_CALLS = Counter(
    "dispatch_tool_calls", "Tool calls run, by outcome: ok, error, cancelled.", ["tool", "outcome"]
)
TOOL_DURATION = Histogram(
    "dispatch_tool_duration_seconds",
    "A tool call's run time.",
    ["tool"],
    buckets=DURATION_BUCKETS,
)
WEBSOCKETS_OPEN = Gauge(
    "dispatch_websockets_open",
    "Signed-in WebSockets open on this worker: api (JSON protocol), webapp (the web app).",
    ["kind"],
)
CHANNEL_SEND_FAILURES = Counter(
    "dispatch_channel_layer_send_failures",
    "Messages the channel layer failed to send (dropped; clients resync from the log).",
    ["type"],
)
COMPACTIONS = Counter(
    "dispatch_compactions",
    "Context compactions, automatic or asked for, by outcome.",
    ["model", "automatic", "outcome"],
)

for _kind in SOCKET_KINDS:  # a series at 0 from the start, not only after the first socket
    WEBSOCKETS_OPEN.labels(_kind)


class MetricsObserver(TurnObserver):
    """Records one turn's boundaries in the worker's metrics."""

    def __init__(self, model: str, tools: Collection[str]) -> None:
        self._model = model
        self._tools = tools
        self._ttft = TTFT.labels(model)
        self._decode = DECODE.labels(model)
        self._step = STEP_DURATION.labels(model)
        self._input = TOKENS.labels(model, "input")
        self._output = TOKENS.labels(model, "output")

    def turn_started(self) -> None:
        TURNS_STARTED.labels(self._model).inc()
        TURNS_RUNNING.inc()

    def step_started(self, step_id: str, request: ProviderRequest) -> None:
        pass

    def provider_retry(self, step_id: str, error: ProviderError, attempt: int) -> None:
        PROVIDER_RETRIES.labels(self._model, error.code or "unknown").inc()

    def step_ended(
        self, metrics: StepMetrics, finish_reason: str, error: ProviderError | None
    ) -> None:
        if metrics.ttft_ms is not None:
            self._ttft.observe(metrics.ttft_ms / 1000)
        if metrics.decode_ms is not None:
            self._decode.observe(metrics.decode_ms / 1000)
        if metrics.gen_total_ms is not None:
            self._step.observe(metrics.gen_total_ms / 1000)
        usage = metrics.usage
        if usage.input_tokens:
            self._input.inc(usage.input_tokens)
        if usage.output_tokens:
            self._output.inc(usage.output_tokens)
        if usage.cache_read_tokens:
            TOKENS.labels(self._model, "cache_read").inc(usage.cache_read_tokens)
        if usage.cache_write_tokens:
            TOKENS.labels(self._model, "cache_write").inc(usage.cache_write_tokens)
        if error is not None:
            PROVIDER_ERRORS.labels(self._model, error.code or "unknown").inc()

    def tool_ended(
        self, step_id: str, call: WireChunk, outcome: ToolOutcome | None, duration_ms: float
    ) -> None:
        name = call["toolName"]
        tool = name if name in self._tools else UNKNOWN_TOOL
        result = "cancelled" if outcome is None else "error" if outcome.is_error else "ok"
        TOOL_CALLS.labels(tool, result).inc()
        TOOL_DURATION.labels(tool).observe(duration_ms / 1000)

    def turn_ended(self, metrics: TurnMetrics) -> None:
        TURNS_RUNNING.dec()
        TURNS_ENDED.labels(self._model, metrics.finish_reason).inc()


def turn_interrupted(*, model: str) -> None:
    """A turn whose worker died was sealed ``interrupted`` by this worker's recovery."""
    TURNS_ENDED.labels(model, "interrupted").inc()


def socket_opened(kind: str) -> None:
    """A signed-in WebSocket of ``kind`` (``api`` or ``webapp``) opened."""
    WEBSOCKETS_OPEN.labels(kind).inc()


def socket_closed(kind: str) -> None:
    """A WebSocket counted by ``socket_opened`` closed."""
    WEBSOCKETS_OPEN.labels(kind).dec()


def channel_send_failed(message_type: str) -> None:
    """The channel layer failed to send a message of ``message_type`` (it was dropped)."""
    CHANNEL_SEND_FAILURES.labels(message_type).inc()


def compaction(*, model: str, automatic: bool, outcome: str) -> None:
    """A compaction of a conversation's context on ``model`` ended with ``outcome`` (e.g.
    ``ok``, ``error``, ``skipped``); ``automatic`` when the server decided it, not a user."""
    COMPACTIONS.labels(model, "true" if automatic else "false", outcome).inc()

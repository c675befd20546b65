"""Operational telemetry: Prometheus metrics and OpenTelemetry traces (docs/deploy.md).

The services and transports report through these functions; the runtime sees only its
``TurnObserver`` port, which ``turn_observer`` fills. Metrics are always counted (a few
counter updates per step and tool call); ``/-/metrics`` serves them once enabled. Traces are
recorded only when the ``OTEL_*`` environment turns them on (chat.observe.tracing).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from django.conf import settings
from django.dispatch import receiver

from chat.observe import tracing
from chat.observe.endpoint import MetricsEndpoint, with_metrics
from chat.observe.prometheus import (
    MetricsObserver,
    channel_send_failed,
    compaction,
    socket_closed,
    socket_opened,
    turn_interrupted,
)
from chat.observe.tracing import socket_frame
from chat.runtime import (
    ProviderError,
    ProviderRequest,
    StepMetrics,
    ToolOutcome,
    TurnConfig,
    TurnMetrics,
    TurnObserver,
)
from chat.runtime.types import WireChunk
from chat.signals import compaction_finished

__all__ = [
    "channel_send_failed",
    "compaction",
    "configure",
    "http_app",
    "socket_closed",
    "socket_frame",
    "socket_opened",
    "turn_interrupted",
    "turn_observer",
]


def configure() -> None:
    """At a worker's start: tracing on when the environment asks (TracingConfigError if it
    asks for an exporter that is not installed)."""
    tracing.configure()


def http_app(app: Any) -> Any:
    """The worker's HTTP application: ``app`` traced when tracing is on, and ``/-/metrics``
    in front of it when a token or an allow-list enables it (never traced itself)."""
    endpoint = MetricsEndpoint(
        token=settings.DISPATCH_PROMETHEUS_TOKEN, allow=settings.DISPATCH_PROMETHEUS_ALLOW
    )
    return with_metrics(tracing.http_app(app), endpoint)


def turn_observer(config: TurnConfig, *, system: str, tools: Collection[str]) -> TurnObserver:
    """The observer of a turn about to start: its metrics, and its trace when tracing is on,
    under the span current now (the request's or socket frame's that starts the turn).

    ``system`` is the provider kind (``openai``, ``anthropic``, ``local`` or a plugin's);
    ``tools`` the names of the tools the turn may call.
    """
    metrics = MetricsObserver(config.model, tools)
    traced = tracing.turn_tracer(config, system=system)
    return metrics if traced is None else _Both(metrics, traced)


class _Both(TurnObserver):
    """Tells two observers everything, in order."""

    def __init__(self, first: TurnObserver, second: TurnObserver) -> None:
        self._first, self._second = first, second

    def turn_started(self) -> None:
        self._first.turn_started()
        self._second.turn_started()

    def step_started(self, step_id: str, request: ProviderRequest) -> None:
        self._first.step_started(step_id, request)
        self._second.step_started(step_id, request)

    def provider_retry(self, step_id: str, error: ProviderError, attempt: int) -> None:
        self._first.provider_retry(step_id, error, attempt)
        self._second.provider_retry(step_id, error, attempt)

    def step_ended(
        self, metrics: StepMetrics, finish_reason: str, error: ProviderError | None
    ) -> None:
        self._first.step_ended(metrics, finish_reason, error)
        self._second.step_ended(metrics, finish_reason, error)

    def tool_started(self, step_id: str, call: WireChunk) -> None:
        self._first.tool_started(step_id, call)
        self._second.tool_started(step_id, call)

    def tool_ended(
        self, step_id: str, call: WireChunk, outcome: ToolOutcome | None, duration_ms: float
    ) -> None:
        self._first.tool_ended(step_id, call, outcome, duration_ms)
        self._second.tool_ended(step_id, call, outcome, duration_ms)

    def turn_ended(self, metrics: TurnMetrics) -> None:
        self._first.turn_ended(metrics)
        self._second.turn_ended(metrics)


@receiver(compaction_finished)
def _count_compaction(*, model: str, trigger: str, ok: bool, code: str | None, **_: Any) -> None:
    """Every compaction, from the one place it is reported (chat.signals)."""
    compaction(model=model, automatic=trigger == "auto", outcome="ok" if ok else code or "error")

"""OpenTelemetry traces: off unless the standard ``OTEL_*`` environment variables ask for them.

Tracing is on when ``OTEL_SDK_DISABLED`` is not ``true`` and either ``OTEL_TRACES_EXPORTER``
names an exporter (``otlp``, ``console``; ``none`` keeps it off) or an OTLP endpoint is set
(``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``). The OTLP exporter
speaks http/protobuf and reads its own variables (endpoint, headers, timeout, compression,
certificates); the SDK reads the sampler (``OTEL_TRACES_SAMPLER``), the batch processor
(``OTEL_BSP_*``) and the resource (``OTEL_SERVICE_NAME``, default ``dispatch``;
``OTEL_RESOURCE_ATTRIBUTES``).

What is traced (docs/deploy.md): every HTTP request (opentelemetry-instrumentation-asgi, with
the W3C ``traceparent`` of the request as parent) and every WebSocket frame a socket handles;
a turn is a span (``invoke_agent``) under the request or frame that started it, with a span
per step (``chat <model>``, GenAI semantic conventions) and per tool call (``execute_tool``).
Message contents — the provider request's messages, tool arguments and results — are recorded
only with ``OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware, asgi_getter
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, TracerProvider

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

AGENT = "dispatch"
CAPTURE_CONTENT = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"
# Not traced: scrapes and health checks would bury the turns; static files are noise.
DEFAULT_EXCLUDED_URLS = r"/-/metrics,/health$,/static/"
SUPPORTED_PROTOCOL = "http/protobuf"

_provider: TracerProvider | None = None
_tracer: Tracer | None = None
_capture_content = False


class TracingConfigError(Exception):
    """The OTEL_* variables ask for something this installation cannot do."""


def requested(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment turns tracing on (see the module docstring)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters:
        return exporters != "none"
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def configure(environ: Mapping[str, str] = os.environ) -> bool:
    """Turn tracing on when the environment asks for it (once per process); whether it is on.

    Raises TracingConfigError for an exporter or OTLP protocol that is not installed.
    """
    if _provider is not None or not requested(environ):
        return _provider is not None
    # The SDK and the exporter are loaded only when tracing is on.
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": AGENT}))
    provider = SdkTracerProvider(resource=resource)
    names = [n.strip() for n in environ.get("OTEL_TRACES_EXPORTER", "otlp").lower().split(",")]
    for name in filter(None, names):
        if name == "otlp":
            protocol = environ.get(
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", SUPPORTED_PROTOCOL),
            ).strip()
            if protocol != SUPPORTED_PROTOCOL:
                raise TracingConfigError(
                    f"OTLP protocol {protocol!r} is not supported: Dispatch exports traces "
                    f"over {SUPPORTED_PROTOCOL} (set OTEL_EXPORTER_OTLP_PROTOCOL={SUPPORTED_PROTOCOL})"
                )
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        elif name == "console":
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
        elif name != "none":
            raise TracingConfigError(
                f"OTEL_TRACES_EXPORTER: unknown exporter {name!r} (expected otlp, console or none)"
            )
    trace.set_tracer_provider(provider)  # for any other instrumentation in the process
    install(provider, capture_content=_flag(environ.get(CAPTURE_CONTENT, "")))
    return True


def install(provider: TracerProvider | None, *, capture_content: bool = False) -> None:
    """Trace with ``provider`` from now on (None: tracing off). ``configure`` calls it; tests
    install an SDK provider with an in-memory exporter."""
    global _provider, _tracer, _capture_content
    _provider = provider
    _tracer = None if provider is None else provider.get_tracer("dispatch")
    _capture_content = capture_content


def enabled() -> bool:
    return _tracer is not None


def _flag(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


# ---------------------------------------------------------------- requests and frames


def http_app(app: Any) -> Any:
    """``app`` with a server span per HTTP request when tracing is on; ``app`` itself when off."""
    if _provider is None:
        return app
    return OpenTelemetryMiddleware(
        app,
        tracer_provider=_provider,
        exclude_spans=["receive", "send"],  # never a span per streamed line
        excluded_urls=os.environ.get("OTEL_PYTHON_ASGI_EXCLUDED_URLS", DEFAULT_EXCLUDED_URLS),
    )


_NO_SPAN: AbstractContextManager[None] = contextlib.nullcontext()


def socket_frame(scope: dict[str, Any], op: str) -> AbstractContextManager[Any]:
    """A server span for one WebSocket frame the socket handles (op: the frame's ``type``),
    current while its handler runs; the handshake's ``traceparent``, if any, is its parent."""
    if _tracer is None:
        return _NO_SPAN
    return _tracer.start_as_current_span(
        f"WS {op}",
        context=propagate.extract(scope, getter=asgi_getter),
        kind=SpanKind.SERVER,
        attributes={
            "network.protocol.name": "websocket",
            "url.path": scope.get("path", ""),
            "dispatch.socket.op": op,
        },
    )


# ---------------------------------------------------------------- turns


def turn_tracer(config: TurnConfig, *, system: str) -> TurnObserver | None:
    """An observer that traces the turn, under the span current now (the request's or frame's
    that starts the turn); None when tracing is off."""
    if _tracer is None:
        return None
    return TraceObserver(
        _tracer, config, system=system, parent=otel_context.get_current(),
        capture_content=_capture_content,
    )  # fmt: skip


class TraceObserver(TurnObserver):
    """Spans for one turn: the turn, each step's model call, each tool call.

    Steps and tool calls are children of the turn (GenAI semantic conventions: ``chat`` and
    ``execute_tool`` spans under ``invoke_agent``); a step's or tool call's span is current
    while it runs, so instrumented clients under it (an HTTP library, a plugin) nest there.
    """

    def __init__(
        self,
        tracer: Tracer,
        config: TurnConfig,
        *,
        system: str,
        parent: otel_context.Context,
        capture_content: bool,
    ) -> None:
        self._tracer = tracer
        self._config = config
        self._parent = parent
        self._capture = capture_content
        self._common = {
            "gen_ai.system": system,
            "gen_ai.provider.name": system,
            "gen_ai.request.model": config.provider_model,
            "gen_ai.conversation.id": config.conversation_id,
            "dispatch.turn.id": config.turn_id,
            "dispatch.model": config.model,
        }
        self._turn: Span = trace.INVALID_SPAN
        self._turn_context: otel_context.Context = parent
        self._step: Span = trace.INVALID_SPAN
        self._step_token: object = None
        self._tools: dict[str, tuple[Span, object]] = {}

    def turn_started(self) -> None:
        self._turn = self._tracer.start_span(
            f"invoke_agent {AGENT}",
            context=self._parent,
            kind=SpanKind.INTERNAL,
            attributes={
                "gen_ai.operation.name": "invoke_agent",
                "gen_ai.agent.name": AGENT,
                **self._common,
            },
        )
        self._turn_context = trace.set_span_in_context(self._turn)

    def step_started(self, step_id: str, request: ProviderRequest) -> None:
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            **self._common,
            "dispatch.step.id": step_id,
        }
        if request.max_tokens is not None:
            attributes["gen_ai.request.max_tokens"] = request.max_tokens
        if self._capture:
            attributes["gen_ai.input.messages"] = json.dumps(
                [{"role": m.role, "chunks": m.chunks} for m in request.messages],
                ensure_ascii=False,
            )
        self._step = self._tracer.start_span(
            f"chat {self._config.provider_model}",
            context=self._turn_context,
            kind=SpanKind.CLIENT,
            attributes=attributes,
        )
        self._step_token = otel_context.attach(trace.set_span_in_context(self._step))

    def provider_retry(self, step_id: str, error: ProviderError, attempt: int) -> None:
        self._step.add_event(
            "provider-retry",
            {"attempt": attempt, "error.type": error.code or "unknown", "message": error.message},
        )

    def step_ended(
        self, metrics: StepMetrics, finish_reason: str, error: ProviderError | None
    ) -> None:
        span = self._step
        span.set_attributes(
            {
                "gen_ai.usage.input_tokens": metrics.usage.input_tokens,
                "gen_ai.usage.output_tokens": metrics.usage.output_tokens,
                "gen_ai.response.finish_reasons": (finish_reason,),
                **_timings(metrics),
            }
        )
        if error is not None:
            span.set_attribute("error.type", error.code or "unknown")
            span.set_status(Status(StatusCode.ERROR, error.message))
        _detach(self._step_token)
        span.end()

    def tool_started(self, step_id: str, call: WireChunk) -> None:
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": call["toolName"],
            "gen_ai.tool.call.id": call["toolCallId"],
            "gen_ai.conversation.id": self._config.conversation_id,
            "dispatch.step.id": step_id,
        }
        if self._capture:
            attributes["gen_ai.tool.call.arguments"] = json.dumps(call["input"], ensure_ascii=False)
        span = self._tracer.start_span(
            f"execute_tool {call['toolName']}",
            context=self._turn_context,
            kind=SpanKind.INTERNAL,
            attributes=attributes,
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        self._tools[call["toolCallId"]] = (span, token)

    def tool_ended(
        self, step_id: str, call: WireChunk, outcome: ToolOutcome | None, duration_ms: float
    ) -> None:
        span, token = self._tools.pop(call["toolCallId"], (trace.INVALID_SPAN, None))
        result = "cancelled" if outcome is None else "error" if outcome.is_error else "ok"
        span.set_attribute("dispatch.tool.outcome", result)
        if outcome is not None and outcome.is_error:
            span.set_attribute("error.type", "tool_error")
            span.set_status(Status(StatusCode.ERROR))
        if outcome is not None and self._capture:
            span.set_attribute("gen_ai.tool.call.result", outcome.content)
        _detach(token)
        span.end()

    def turn_ended(self, metrics: TurnMetrics) -> None:
        span = self._turn
        span.set_attributes(
            {
                "gen_ai.usage.input_tokens": metrics.usage.input_tokens,
                "gen_ai.usage.output_tokens": metrics.usage.output_tokens,
                "gen_ai.response.finish_reasons": (metrics.finish_reason,),
                "dispatch.turn.steps": len(metrics.steps),
            }
        )
        if metrics.context_size is not None:
            span.set_attribute("dispatch.turn.context_size", metrics.context_size)
        if metrics.finish_reason == "error":
            span.set_status(Status(StatusCode.ERROR))
        span.end()


def _timings(metrics: StepMetrics) -> dict[str, float]:
    """The step's known timings (TTFT, decode, the whole stream) in ms."""
    timings = (
        ("dispatch.step.ttft_ms", metrics.ttft_ms),
        ("dispatch.step.decode_ms", metrics.decode_ms),
        ("dispatch.step.gen_total_ms", metrics.gen_total_ms),
    )
    return {key: value for key, value in timings if value is not None}


def _detach(token: object) -> None:
    if token is not None:
        otel_context.detach(token)  # type: ignore[arg-type]

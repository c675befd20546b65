"""OpenTelemetry traces of turns, into the SDK's in-memory exporter: a span per turn under the
HTTP request or WebSocket frame that started it, a span per step (GenAI attributes) and per
tool call; message contents only when asked for."""

from __future__ import annotations

import json
import uuid

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.core.asgi import get_asgi_application
from opentelemetry.trace import SpanKind, StatusCode

from chat import observe
from chat.observe import tracing
from tests.chat.observe.asgi import request
from tests.chat.providers.sse_server import (
    Reply,
    openai_text_reply,
    openai_tool_reply,
)

pytestmark = pytest.mark.django_db(transaction=True)

COMPLETIONS = "/v1/chat/completions"
# A remote parent, as a client sends it in the W3C traceparent header.
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01".encode()


def new_id() -> str:
    return "o-" + uuid.uuid4().hex[:12]


async def post_chat(token: str, conversation_id: str, message: str, headers=()) -> list[dict]:
    """``POST /chat`` through the project's HTTP application, as the worker builds it."""
    app = observe.http_app(get_asgi_application())
    response = await request(
        app,
        "/chat",
        method="POST",
        body=json.dumps({"conversationId": conversation_id, "message": message}).encode(),
        headers=[
            (b"authorization", f"Bearer {token}".encode()),
            (b"content-type", b"application/json"),
            *headers,
        ],
    )
    assert response.status == 200, response.body
    return [json.loads(line) for line in response.body.splitlines() if line.strip()]


def attrs(span) -> dict:
    return dict(span.attributes or {})


async def test_a_turn_is_a_span_under_its_request_with_a_span_per_step_and_tool(
    traces, scripted, token
):
    scripted.script(
        COMPLETIONS,
        openai_tool_reply([("c1", "list_files", {})]),
        openai_text_reply("There is nothing.", prompt_tokens=30, completion_tokens=7),
    )
    conversation_id = new_id()

    events = await post_chat(
        token, conversation_id, "a secret prompt", [(b"traceparent", TRACEPARENT)]
    )

    assert events[-1]["type"] == "turn-sealed"
    [turn] = await traces.wait_for("invoke_agent")
    [http] = await traces.wait_for("POST")
    steps = sorted(await traces.wait_for("chat ", 2), key=lambda s: s.start_time)
    [tool] = await traces.wait_for("execute_tool")

    # One trace, continuing the client's: request → turn → steps and the tool call.
    assert {s.context.trace_id for s in (http, turn, *steps, tool)} == {int(TRACE_ID, 16)}
    assert http.kind == SpanKind.SERVER and http.parent.span_id == int(PARENT_ID, 16)
    assert turn.parent.span_id == http.context.span_id
    assert [s.parent.span_id for s in (*steps, tool)] == [turn.context.span_id] * 3

    assert attrs(turn) == attrs(turn) | {
        "gen_ai.operation.name": "invoke_agent",
        "gen_ai.system": "openai",
        "gen_ai.request.model": "test-model",
        "gen_ai.conversation.id": conversation_id,
        "dispatch.model": "scripted/test-model",
        "dispatch.turn.id": events[0]["turnId"],
        "gen_ai.usage.input_tokens": 40,
        "gen_ai.usage.output_tokens": 12,
        "gen_ai.response.finish_reasons": ("stop",),
        "dispatch.turn.steps": 2,
    }
    complete = [e for e in events if e["type"] == "step-complete"]
    for span, event, reason, usage in zip(
        steps, complete, ("tool-calls", "stop"), ((10, 5), (30, 7)), strict=True
    ):
        assert span.name == "chat test-model" and span.kind == SpanKind.CLIENT
        assert attrs(span) == attrs(span) | {
            "gen_ai.operation.name": "chat",
            "gen_ai.system": "openai",
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "test-model",
            "gen_ai.usage.input_tokens": usage[0],
            "gen_ai.usage.output_tokens": usage[1],
            "gen_ai.response.finish_reasons": (reason,),
            "dispatch.step.id": event["stepId"],
            "dispatch.step.gen_total_ms": event["genTotalMs"],
        }
    assert attrs(steps[1])["dispatch.step.ttft_ms"] == complete[1]["ttftMs"]
    assert "dispatch.step.ttft_ms" not in attrs(steps[0])  # a tool call is not a token
    assert tool.name == "execute_tool list_files"
    assert attrs(tool) == attrs(tool) | {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "list_files",
        "gen_ai.tool.call.id": "c1",
        "dispatch.step.id": complete[0]["stepId"],
        "dispatch.tool.outcome": "ok",
    }
    # The tool ran between the two model calls.
    assert steps[0].end_time <= tool.start_time <= tool.end_time <= steps[1].start_time

    # No message content anywhere unless asked for.
    recorded = json.dumps([attrs(span) for span in traces.spans()], default=str)
    assert "secret prompt" not in recorded
    assert "gen_ai.input.messages" not in recorded and "gen_ai.tool.call.result" not in recorded


async def test_message_contents_are_recorded_only_when_asked_for(
    traces_with_content, scripted, token
):
    scripted.script(
        COMPLETIONS,
        openai_tool_reply([("c1", "list_files", {"path": "."})]),
        openai_text_reply("Empty."),
    )

    await post_chat(token, new_id(), "a secret prompt")

    steps = await traces_with_content.wait_for("chat ", 2)
    [tool] = await traces_with_content.wait_for("execute_tool")
    first = min(steps, key=lambda s: s.start_time)
    messages = json.loads(attrs(first)["gen_ai.input.messages"])
    assert messages[-1] == {"role": "user", "chunks": [{"type": "text", "text": "a secret prompt"}]}
    assert json.loads(attrs(tool)["gen_ai.tool.call.arguments"]) == {"path": "."}
    assert "gen_ai.tool.call.result" in attrs(tool)


async def test_retries_and_a_provider_error_mark_the_step_span(traces, scripted, token):
    scripted.script(
        COMPLETIONS,
        Reply(status=503, body={"error": {"message": "busy"}}),
        Reply(status=400, body={"error": {"message": "no such thing"}}),
    )

    events = await post_chat(token, new_id(), "hi")

    assert events[-2]["reason"] == "error"
    [step] = await traces.wait_for("chat ")
    [turn] = await traces.wait_for("invoke_agent")
    assert [(e.name, dict(e.attributes)["error.type"]) for e in step.events] == [
        ("provider-retry", "http-503")
    ]
    assert step.status.status_code == StatusCode.ERROR
    assert attrs(step)["error.type"] == "http-400"
    assert attrs(step)["gen_ai.response.finish_reasons"] == ("error",)
    assert turn.status.status_code == StatusCode.ERROR


@database_sync_to_async
def _application():
    from dispatch_site.asgi import application  # runs start-up recovery: in a thread

    return application


async def test_a_turn_started_over_a_socket_is_a_span_under_its_frame(traces, scripted, token):
    scripted.script(COMPLETIONS, openai_text_reply("Hello socket"))
    conversation_id = new_id()
    socket = WebsocketCommunicator(await _application(), f"/ws?token={token}")
    connected, _ = await socket.connect(timeout=10)
    assert connected
    assert (await socket.receive_json_from(timeout=10))["type"] == "catalog"

    await socket.send_json_to(
        {"type": "chat.send", "conversationId": conversation_id, "message": "hi"}
    )
    while True:
        frame = await socket.receive_json_from(timeout=10)
        if frame["type"] == "chat.delta" and frame["event"]["type"] == "turn-sealed":
            break
    await socket.disconnect()

    [turn] = await traces.wait_for("invoke_agent")
    [frame_span] = await traces.wait_for("WS chat.send")
    assert frame_span.kind == SpanKind.SERVER
    assert attrs(frame_span) == attrs(frame_span) | {
        "dispatch.socket.op": "chat.send",
        "network.protocol.name": "websocket",
        "url.path": "/ws",
    }
    assert turn.parent.span_id == frame_span.context.span_id
    assert turn.context.trace_id == frame_span.context.trace_id
    assert attrs(turn)["gen_ai.conversation.id"] == conversation_id


def test_the_otel_environment_decides_whether_tracing_is_on():
    assert not tracing.requested({})
    assert tracing.requested({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert tracing.requested({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"})
    assert tracing.requested({"OTEL_TRACES_EXPORTER": "console"})
    assert not tracing.requested({"OTEL_TRACES_EXPORTER": "none"})
    assert not tracing.requested(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318", "OTEL_SDK_DISABLED": "true"}
    )
    assert not tracing.enabled()  # the suite's own environment turns nothing on


def test_without_tracing_nothing_is_wrapped_or_traced():
    app = get_asgi_application()
    assert tracing.http_app(app) is app
    with tracing.socket_frame({"path": "/ws"}, "chat.send") as span:
        assert span is None

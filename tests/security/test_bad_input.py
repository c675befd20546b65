"""Bad input is a 4xx with a clear message, never a 500 and never internals (SQL, tracebacks),
and it neither loses nor corrupts data — on SQLite and on PostgreSQL, whose text and jsonb
columns cannot hold U+0000 at all.

Real workers (tests/chat/live.py) on each database; the scripted model sends what a client
cannot: NUL characters in text, reasoning, tool calls and tool names.
"""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.chat.live import COMPLETIONS, ndjson, start_stack
from tests.chat.providers.sse_server import Reply, openai_chunk, openai_text_reply, openai_usage
from tests.chat.test_ws import Socket
from tests.reliability.helpers import chunks_from_events, log_of

DEEP = 100_000  # levels of nesting in a frame or body
NUL_MESSAGE = "must not contain NUL characters"
# What no error a client sees may contain: SQL, PostgreSQL's context lines, a traceback.
INTERNALS = ("INSERT", "SELECT", "UPDATE", "LINE 1", "DETAIL", "CONTEXT", "Traceback", 'File "')


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def stack(request):
    env = {}
    if request.param == "postgres":
        server = request.getfixturevalue("postgres_server")
        env["DATABASE_URL"] = server.database_create(f"bad_input_{uuid.uuid4().hex[:8]}")
    yield from start_stack(env)


def new_id() -> str:
    return "bad-" + uuid.uuid4().hex[:12]


def assert_refused(response: httpx.Response, status: int, message: str | None = None) -> str:
    """A JSON ``{"error"}`` answer with this status, free of internals; its message."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}, body
    assert not any(word in body["error"] for word in INTERNALS), body
    if message is not None:
        assert body["error"] == message
    return body["error"]


def assert_nothing_stored(client: httpx.Client, conversation_id: str) -> None:
    assert client.get(f"/conversations/{conversation_id}").json()["chunks"] == []
    listed = client.get("/conversations", params={"q": conversation_id}).json()
    assert listed["conversations"] == []


# ---------------------------------------------------------------- NUL characters


def test_nul_in_any_text_field_is_refused_and_stores_nothing(stack):
    conversation_id = new_id()
    with stack.client() as client:
        assert_refused(
            client.post("/chat", json={"conversationId": conversation_id, "message": "a\0b"}),
            400,
            f"message: {NUL_MESSAGE}",
        )
        assert_refused(
            client.put(f"/conversations/{conversation_id}/title", json={"title": "a\0b"}),
            400,
            f"title: {NUL_MESSAGE}",
        )
        assert_refused(
            client.post(f"/conversations/{conversation_id}/queue", json={"text": "a\0b"}),
            400,
            f"text: {NUL_MESSAGE}",
        )
        assert_refused(
            client.put(f"/conversations/{conversation_id}/cwd", json={"cwd": "a\0b"}),
            400,
            f"cwd: {NUL_MESSAGE}",
        )
        assert_refused(
            client.post(
                "/chat", json={"conversationId": conversation_id, "message": "hi", "cwd": "a\0"}
            ),
            400,
            f"cwd: {NUL_MESSAGE}",
        )
        with Socket(stack.ws_url()) as sock:
            sock.send({"type": "chat.send", "conversationId": conversation_id, "message": "\0"})
            assert sock.recv() == {
                "type": "chat.error",
                "conversationId": conversation_id,
                "message": f"message: {NUL_MESSAGE}",
            }
            sock.send({"type": "chat.queue", "conversationId": conversation_id, "text": "x\0"})
            assert sock.recv()["message"] == f"text: {NUL_MESSAGE}"
        assert_nothing_stored(client, conversation_id)


def nul_steps() -> list[Reply]:
    """A step with NUL in its reasoning, text, a tool call's arguments and a tool's name, then
    an answer with NUL in it."""
    calls = [
        {"index": 0, "id": "call_1", "type": "function",
         "function": {"name": "list_files", "arguments": json.dumps({"path": "a\0b"})}},
        {"index": 1, "id": "call_2", "type": "function",
         "function": {"name": "no\0such_tool", "arguments": json.dumps({"k\0": "v\0"})}},
    ]  # fmt: skip
    first = Reply(
        events=[
            openai_chunk({"role": "assistant", "reasoning_content": "think\0ing"}),
            openai_chunk({"content": "let me look\0"}),
            openai_chunk({"tool_calls": calls}),
            openai_chunk({}, "tool_calls"),
            openai_chunk(usage=openai_usage(10, 5)),
            "[DONE]",
        ]
    )
    return [first, openai_text_reply("done\0 and \0\0 dusted")]


def test_nul_in_model_and_tool_output_is_stored_as_u_fffd(stack):
    stack.scripted.script(COMPLETIONS, *nul_steps())
    conversation_id = new_id()
    with stack.client() as client:
        response = client.post("/chat", json={"conversationId": conversation_id, "message": "go"})
        assert response.status_code == 200, response.text
        events = ndjson(response)
        types = [e["type"] for e in events]
        assert "error" not in types, events
        assert types[-2:] == ["done", "turn-sealed"] and events[-2]["reason"] == "stop"
        assert "\0" not in response.text and "\\u0000" not in response.text
        # Every step is in the log, exactly as the client saw it live.
        stored = log_of(client.get(f"/conversations/{conversation_id}").json()["chunks"])
        assert stored == chunks_from_events(events)
        chunks = [chunk for _, chunk in stored]
        assert chunks[1] == {"type": "thinking", "text": "think\ufffding"}
        assert chunks[2] == {"type": "text", "text": "let me look\ufffd"}
        assert chunks[3]["input"] == {"path": "a\ufffdb"}
        assert chunks[4]["toolName"] == "no\ufffdsuch_tool"
        assert chunks[4]["input"] == {"k\ufffd": "v\ufffd"}
        assert chunks[6] == {
            "type": "tool-result",
            "toolCallId": "call_2",
            "toolName": "no\ufffdsuch_tool",
            "content": "unknown tool: no\ufffdsuch_tool",
            "isError": True,
            "stepId": chunks[4]["stepId"],
        }
        assert chunks[-1] == {"type": "text", "text": "done\ufffd and \ufffd\ufffd dusted"}
        turns = client.get(f"/conversations/{conversation_id}/metrics").json()["turns"]
        assert [t["finishReason"] for t in turns] == ["stop"]


# ---------------------------------------------------------------- lengths and numbers

LONG_CWD = "d" * 1200


def test_a_1200_character_cwd_is_refused_everywhere(stack):
    conversation_id = new_id()
    expected = "cwd: String should have at most 1000 characters"
    with stack.client() as client:
        assert_refused(
            client.post(
                "/chat", json={"conversationId": conversation_id, "message": "hi", "cwd": LONG_CWD}
            ),
            400,
            expected,
        )
        assert_refused(
            client.put(f"/conversations/{conversation_id}/cwd", json={"cwd": LONG_CWD}),
            400,
            expected,
        )
        with Socket(stack.ws_url()) as sock:
            sock.send(
                {"type": "chat.send", "conversationId": conversation_id, "message": "hi"}
                | {"cwd": LONG_CWD}
            )
            assert sock.recv()["message"] == expected
        assert_nothing_stored(client, conversation_id)


@pytest.mark.parametrize("name", ["limit", "sinceSeq", "beforeSeq"])
def test_a_window_value_of_30_digits_is_a_400(stack, name):
    with stack.client() as client:
        response = client.get(f"/conversations/{new_id()}", params={name: "9" * 30})
        assert_refused(response, 400, f"{name}: must be an integer of at most 18 digits")


def test_a_queued_message_id_that_is_not_ascii_digits_is_a_400(stack):
    conversation_id = new_id()
    expected = "messageId: must be the number of a queued message"
    with stack.client() as client:
        for message_id in ("²", "١٢", "1" * 19, "-1"):
            response = client.delete(f"/conversations/{conversation_id}/queue/{message_id}")
            assert_refused(response, 400, expected)
    with Socket(stack.ws_url()) as sock:
        sock.send(
            {"type": "invoke", "surfaceId": "message-queue", "actionId": "cancel:²"}
            | {"conversationId": conversation_id}
        )
        assert sock.recv() == {
            "type": "error",
            "conversationId": conversation_id,
            "message": expected,
        }
        sock.send(
            {"type": "chat.queue.cancel", "conversationId": conversation_id, "messageId": "²"}
        )
        assert sock.recv()["message"] == expected


@pytest.mark.parametrize(
    ("period", "date"),
    [("month", "9999-12"), ("week", "0001-01-01"), ("week", "9999-W52"), ("day", "0001-01-01")],
)
def test_throughput_periods_past_the_calendar_are_a_400(stack, period, date):
    with stack.client() as client:
        response = client.get("/metrics/throughput", params={"period": period, "date": date})
        message = assert_refused(response, 400)
        assert message == f"date {date!r}: the {period} must lie between 0001-01-02 and 9999-12-30"


@pytest.mark.parametrize(("period", "date"), [("month", "9999-11"), ("week", "0001-01-08")])
def test_throughput_periods_at_the_ends_of_the_calendar_answer(stack, period, date):
    with stack.client() as client:
        response = client.get("/metrics/throughput", params={"period": period, "date": date})
        assert response.status_code == 200, response.text
        assert response.json()["models"] == []


@pytest.mark.django_db
@pytest.mark.parametrize(("period", "date"), [("month", "9999-12"), ("week", "0001-01-01")])
def test_the_metrics_page_past_the_calendar_is_a_400_page(client, user, period, date):
    client.force_login(user)
    response = client.get("/metrics/", {"period": period, "date": date})
    assert response.status_code == 400
    assert f"the {period} must lie between 0001-01-02 and 9999-12-30" in response.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("period", "date", "missing"), [("month", "9999-11", "next"), ("week", "0001-01-08", "prev")]
)
def test_the_metrics_page_at_the_ends_of_the_calendar_links_only_inside(
    client, user, period, date, missing
):
    client.force_login(user)
    response = client.get("/metrics/", {"period": period, "date": date})
    assert response.status_code == 200
    html = response.content.decode()
    present = {"next", "prev"} - {missing}
    assert f'rel="{missing}"' not in html and f'rel="{present.pop()}"' in html


# ---------------------------------------------------------------- deep JSON


def deep_frame(op_key: str, op: str) -> str:
    return f'{{"{op_key}": "{op}", "x": ' + "[" * DEEP + "]" * DEEP + "}"


def test_a_100000_deep_frame_is_refused_and_the_socket_stays_open(stack):
    with Socket(stack.ws_url()) as sock:
        sock.ws.send(deep_frame("type", "chat.send"))
        assert sock.recv() == {
            "type": "chat.error",
            "message": "malformed frame: nested too deeply",
        }
        sock.send({"type": "chat.subscribe", "conversationId": new_id()})
        sock.send({"type": "nope"})
        assert sock.recv() == {"type": "chat.error", "message": "unknown type: nope"}
    url = stack.ws_url(path="/ws/ui") + f"&conversation={new_id()}"
    with connect(url, open_timeout=20) as ws:
        ws.send(deep_frame("action", "send"))
        notices = []
        while not notices:
            fragment = ws.recv(timeout=20)
            if 'id="notice"' in fragment:
                notices.append(fragment)
        assert "malformed frame: nested too deeply" in notices[0]
        ws.send(json.dumps({"action": "nope"}))
        while 'id="notice"' not in (fragment := ws.recv(timeout=20)):
            pass
        assert "unknown action: nope" in fragment


@pytest.mark.parametrize(("method", "path"), [("POST", "/chat"), ("PUT", "/tabs")])
def test_a_100000_deep_body_is_malformed_json(stack, method, path):
    with stack.client() as client:
        body = '{"message": ' + "[" * DEEP + "]" * DEEP + "}"
        response = client.request(
            method, path, content=body, headers={"Content-Type": "application/json"}
        )
        assert_refused(response, 400, "malformed JSON body")


# ---------------------------------------------------------------- no credentials


def unsafe_operations(stack) -> list[tuple[str, str]]:
    schema = httpx.get(stack.url + "/api/openapi.json").json()
    operations = []
    for path, methods in schema["paths"].items():
        for method in methods:
            if method.upper() in {"POST", "PUT", "PATCH", "DELETE"}:
                concrete = path.replace("{conversation_id}", "c1").replace("{message_id}", "1")
                operations.append((method.upper(), concrete))
    return operations


def test_unauthenticated_unsafe_routes_answer_401(stack):
    operations = unsafe_operations(stack)
    assert ("POST", "/chat") in operations and ("DELETE", "/conversations/c1/queue/1") in operations
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        with httpx.Client(base_url=stack.url, headers=headers, timeout=30) as anonymous:
            for method, path in operations:
                response = anonymous.request(method, path, json={"message": "hi", "text": "x"})
                message = assert_refused(response, 401)
                assert message.startswith("authentication required"), (method, path)
    with connect(stack.url.replace("http", "ws") + "/ws", open_timeout=20) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=20)
        assert closed.value.rcvd.code == 4401

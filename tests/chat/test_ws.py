"""The WebSocket JSON protocol (docs/protocol.md#6-websocket-json-protocol) against a real Daphne."""

from __future__ import annotations

import json
import threading
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.chat.live import COMPLETIONS, ndjson
from tests.chat.providers.sse_server import openai_text_reply
from tests.chat.test_api_chat import gated_reply

TIMEOUT = 20


def new_id() -> str:
    return "w-" + uuid.uuid4().hex[:12]


class Socket:
    """A JSON client of the protocol."""

    def __init__(self, url: str):
        self.ws = connect(url, open_timeout=TIMEOUT)
        self.catalog = self.recv()

    def send(self, frame: dict) -> None:
        self.ws.send(json.dumps(frame))

    def recv(self) -> dict:
        return json.loads(self.ws.recv(timeout=TIMEOUT))

    def until(self, predicate) -> list[dict]:
        """Frames received up to and including the first that satisfies ``predicate``."""
        frames = []
        while True:
            frames.append(self.recv())
            if predicate(frames[-1]):
                return frames

    def deltas_until_sealed(self) -> list[dict]:
        frames = self.until(
            lambda f: f["type"] == "chat.delta" and f["event"]["type"] == "turn-sealed"
        )
        return [f["event"] for f in frames if f["type"] == "chat.delta"]

    def close(self) -> None:
        self.ws.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def test_unauthenticated_sockets_are_closed_with_4401(stack):
    for path in ("/ws", "/"):
        url = stack.url.replace("http://", "ws://") + path + "?token=wrong"
        with connect(url, open_timeout=TIMEOUT) as ws, pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=TIMEOUT)
        assert closed.value.rcvd.code == 4401


def test_token_in_authorization_header_and_bare_path(stack):
    url = stack.url.replace("http://", "ws://") + "/"
    with connect(url, additional_headers=stack.headers(), open_timeout=TIMEOUT) as ws:
        catalog = json.loads(ws.recv(timeout=TIMEOUT))
    assert catalog["type"] == "catalog"
    assert {entry["id"] for entry in catalog["catalog"]} == {"message-queue", "tools"}


def test_chat_send_streams_the_turn_to_the_sender(stack):
    stack.scripted.script(COMPLETIONS, openai_text_reply("Hi from the socket"))
    conversation_id = new_id()
    with Socket(stack.ws_url()) as sock:
        assert sock.catalog["type"] == "catalog"
        sock.send({"type": "chat.send", "conversationId": conversation_id, "message": "hello"})
        frames = sock.until(
            lambda f: f["type"] == "chat.delta" and f["event"]["type"] == "turn-sealed"
        )
    events = [f["event"] for f in frames if f["type"] == "chat.delta"]
    assert [e["type"] for e in events[:2]] == ["user-message", "turn-start"]
    assert "".join(e["delta"] for e in events if e["type"] == "text-delta") == "Hi from the socket"
    statuses = [f["status"] for f in frames if f["type"] == "conversation.statusChanged"]
    assert statuses[0] == "active"
    assert {"type": "conversation.open", "conversationId": conversation_id} in frames


def test_malformed_frames_get_chat_error_and_the_socket_keeps_working(stack):
    with Socket(stack.ws_url()) as sock:
        for raw in [
            "not json",
            "[1,2]",
            '{"type": 5}',
            '{"type": "nope"}',
            '{"type": "chat.send"}',
            '{"type": "chat.send", "message": 1}',
            '{"type": "chat.subscribe"}',
            '{"type": "chat.subscribe", "conversationId": "../x"}',
        ]:
            sock.ws.send(raw)
            frame = sock.recv()
            assert frame["type"] == "chat.error", raw
            assert frame["message"]
        # Surface ops answer with the surface protocol's own `error` frame.
        for raw in [
            '{"type": "invoke", "surfaceId": "tools", "actionId": "x"}',
            '{"type": "subscribe", "surfaceId": "nope"}',
        ]:
            sock.ws.send(raw)
            frame = sock.recv()
            assert frame["type"] == "error", raw
            assert frame["message"]
        # Before it has a conversation, a client may subscribe to the queue: it is empty.
        sock.ws.send('{"type": "subscribe", "surfaceId": "message-queue"}')
        frame = sock.recv()
        assert frame["type"] == "surface"
        assert frame["spec"]["fields"] == [{"kind": "stat", "label": "Queued", "value": "0"}]
        stack.scripted.script(COMPLETIONS, openai_text_reply("still here"))
        sock.send({"type": "chat.send", "conversationId": new_id(), "message": "x"})
        events = sock.deltas_until_sealed()
    assert events[-2]["reason"] == "stop"


def test_frames_of_every_length_arrive_whole(stack):
    """A frame's length takes 7, 16 or 64 bits (RFC 6455 §5.2): a short error, the turn's
    events, and an answer of 160,000 bytes of UTF-8 all arrive whole and in order
    (chat/overrides/ws_send.py writes them)."""
    answer = "é" * 80_000  # more bytes than characters
    stack.scripted.script(COMPLETIONS, openai_text_reply(answer))
    with Socket(stack.ws_url()) as sock:
        sock.ws.send('{"type": "nope"}')
        assert len(sock.ws.recv(timeout=TIMEOUT).encode()) <= 125
        sock.send({"type": "chat.send", "conversationId": new_id(), "message": "hello"})
        events = sock.deltas_until_sealed()
    assert [e["type"] for e in events[:2]] == ["user-message", "turn-start"]
    assert "".join(e["delta"] for e in events if e["type"] == "text-delta") == answer
    assert events[-1]["type"] == "turn-sealed"


def test_second_send_on_a_busy_conversation_is_a_chat_error(stack):
    gate = threading.Event()
    stack.scripted.script(COMPLETIONS, gated_reply(gate))
    conversation_id = new_id()
    with Socket(stack.ws_url()) as sock:
        sock.send({"type": "chat.send", "conversationId": conversation_id, "message": "a"})
        sock.until(lambda f: f["type"] == "chat.delta" and f["event"]["type"] == "text-delta")
        sock.send({"type": "chat.send", "conversationId": conversation_id, "message": "b"})
        error = sock.until(lambda f: f["type"] == "chat.error")[-1]
        assert error["conversationId"] == conversation_id
        assert "already running" in error["message"]
        gate.set()
        events = sock.deltas_until_sealed()
    assert events[-2]["reason"] == "stop"


def test_subscribe_mid_turn_replays_then_streams_live_with_no_gap_or_duplicate(stack):
    gate = threading.Event()
    stack.scripted.script(COMPLETIONS, gated_reply(gate), openai_text_reply("second turn"))
    conversation_id = new_id()
    with stack.client() as client, Socket(stack.ws_url()) as watcher:
        with client.stream(
            "POST", "/chat", json={"message": "a", "conversationId": conversation_id}
        ) as r:
            streamed = []
            for line in r.iter_lines():
                streamed.append(json.loads(line))
                if streamed[-1]["type"] == "text-delta" and not gate.is_set():
                    watcher.send({"type": "chat.subscribe", "conversationId": conversation_id})
                    replayed = watcher.until(
                        lambda f: f["type"] == "chat.delta" and f["event"]["type"] == "text-delta"
                    )
                    # (conversation.open went first: a new conversation of the user.)
                    replayed = [f for f in replayed if f["type"] == "chat.delta"]
                    assert replayed[0]["event"]["type"] == "user-message"
                    gate.set()
        seen = [f["event"] for f in replayed if f["type"] == "chat.delta"]
        seen += watcher.deltas_until_sealed()
        assert seen == streamed

        # Subscriptions outlive turns: the next turn streams to the watcher too.
        second = ndjson(
            client.post("/chat", json={"message": "b", "conversationId": conversation_id})
        )
        assert watcher.deltas_until_sealed() == second


def test_closing_a_socket_never_affects_a_turn(stack):
    gate = threading.Event()
    stack.scripted.script(COMPLETIONS, gated_reply(gate))
    conversation_id = new_id()
    sock = Socket(stack.ws_url())
    sock.send({"type": "chat.send", "conversationId": conversation_id, "message": "a"})
    sock.until(lambda f: f["type"] == "chat.delta" and f["event"]["type"] == "text-delta")
    sock.close()
    with Socket(stack.ws_url()) as again:
        again.send({"type": "chat.subscribe", "conversationId": conversation_id})
        gate.set()
        events = again.deltas_until_sealed()
    assert events[0]["type"] == "user-message"
    assert "".join(e["delta"] for e in events if e["type"] == "text-delta") == "Hello world"


def test_queue_surface_and_socket_queue_ops(stack):
    gate = threading.Event()
    stack.scripted.script(COMPLETIONS, gated_reply(gate), openai_text_reply("carried"))
    conversation_id = new_id()
    with Socket(stack.ws_url()) as sock:
        sock.send({"type": "chat.send", "conversationId": conversation_id, "message": "a"})
        sock.until(lambda f: f["type"] == "chat.delta" and f["event"]["type"] == "text-delta")
        sock.send(
            {"type": "subscribe", "surfaceId": "message-queue", "conversationId": conversation_id}
        )
        surface = sock.until(lambda f: f["type"] == "surface")[-1]
        assert surface["conversationId"] == conversation_id
        assert surface["spec"]["id"] == "message-queue"
        assert surface["spec"]["fields"][0] == {"kind": "stat", "label": "Queued", "value": "0"}

        sock.send({"type": "chat.queue", "conversationId": conversation_id, "text": "drop me"})
        update = sock.until(lambda f: f["type"] == "update")[-1]["update"]
        cancel = next(f for f in update["spec"]["fields"] if f["kind"] == "button")
        assert "drop me" in cancel["label"]
        sock.send({"type": "chat.queue", "conversationId": conversation_id, "text": "keep me"})
        sock.until(lambda f: f["type"] == "update")
        sock.send(
            {
                "type": "invoke",
                "surfaceId": "message-queue",
                "conversationId": conversation_id,
                "actionId": cancel["action"]["actionId"],
            }
        )
        update = sock.until(lambda f: f["type"] == "update")[-1]["update"]
        labels = [f["label"] for f in update["spec"]["fields"] if f["kind"] == "button"]
        assert labels == ["Cancel: keep me"]
        sock.send(
            {"type": "chat.queue.cancel", "conversationId": conversation_id, "messageId": "999999"}
        )
        assert (
            sock.until(lambda f: f["type"] == "chat.error")[-1]["conversationId"] == conversation_id
        )
        gate.set()
        first = sock.deltas_until_sealed()
        carried = sock.deltas_until_sealed()
    assert first[-2]["reason"] == "stop"
    assert carried[0] == {**carried[0], "type": "user-message", "text": "keep me"}


def test_tools_surface_lists_loaded_tools(stack):
    with Socket(stack.ws_url()) as sock:
        sock.send({"type": "subscribe", "surfaceId": "tools"})
        spec = sock.until(lambda f: f["type"] == "surface")[-1]["spec"]
    names = {f["label"] for f in spec["fields"]}
    assert {"read_file", "list_files", "write_file"} <= names
    assert all(f["kind"] in {"stat", "toggle", "custom"} for f in spec["fields"])


def test_another_users_conversation_is_not_found_on_the_socket(stack):
    stack.scripted.script(COMPLETIONS, openai_text_reply("secret answer"))
    conversation_id = new_id()
    with stack.client() as client:
        ndjson(client.post("/chat", json={"message": "secret", "conversationId": conversation_id}))
    with Socket(stack.ws_url("bob")) as sock:
        sock.send({"type": "chat.subscribe", "conversationId": conversation_id})
        frame = sock.recv()
        sock.send({"type": "chat.send", "conversationId": conversation_id, "message": "x"})
        frame2 = sock.recv()
    assert frame["type"] == frame2["type"] == "chat.error"
    assert "secret" not in json.dumps([frame, frame2])


frames = st.one_of(
    st.text(max_size=40),
    st.binary(max_size=20).map(lambda b: b.decode("latin-1")),
    st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False)
        | st.text(max_size=10),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.text(max_size=8), children, max_size=3)
        ),
        max_leaves=8,
    ).map(json.dumps),
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(
                [
                    "chat.subscribe",
                    "chat.unsubscribe",
                    "chat.queue.cancel",
                    "subscribe",
                    "unsubscribe",
                    "invoke",
                    "chat.queue",
                ]
            )
        },
        optional={
            "conversationId": st.text(max_size=20) | st.integers(),
            "surfaceId": st.text(max_size=12) | st.sampled_from(["tools", "message-queue"]),
            "actionId": st.text(max_size=12),
            "messageId": st.text(max_size=5) | st.integers(),
            "text": st.text(max_size=10) | st.none(),
        },
    ).map(json.dumps),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=frames)
def test_random_frames_never_break_the_socket(stack, raw):
    with Socket(stack.ws_url()) as sock:
        sock.ws.send(raw)
        # Whatever the frame did, a valid frame still gets its answer on the same socket.
        sock.send({"type": "subscribe", "surfaceId": "tools"})
        answers = sock.until(lambda f: f["type"] == "surface" and f["spec"]["id"] == "tools")
    for frame in answers[:-1]:
        assert frame["type"] in {
            "chat.error",
            "error",
            "surface",
            "update",
            "chat.delta",
            "conversation.statusChanged",
        }, frame
        if frame["type"] in {"chat.error", "error"}:
            assert isinstance(frame["message"], str) and frame["message"]

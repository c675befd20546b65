"""A worker told to stop (SIGTERM) drains: it takes no new turns or sockets, its /health fails,
its sockets get a reconnect hint, running turns finish — or, past the deadline, are sealed
``interrupted`` after their last committed step — and then it exits (docs/deploy.md).

One real worker (SQLite); the rolling restart of a two-worker cluster is
test_rolling_restart.py.
"""

from __future__ import annotations

import uuid

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.chat.live import COMPLETIONS, start_stack, wait_for
from tests.chat.providers.sse_server import openai_tool_reply
from tests.chat.test_api_chat import gated_reply, history, sealed_turns
from tests.chat.test_ws import Socket
from tests.reliability.helpers import Stream, chunks_from_events, log_of
from tests.reliability.test_faults import assert_ended, send, until_event

GOING_AWAY = 4503
SHUTTING_DOWN = "this server is shutting down: send again and another server will take it"
EXIT_TIMEOUT = 60


@pytest.fixture(scope="module")
def stack():
    yield from start_stack({"DISPATCH_DRAIN_SECONDS": "120"})


@pytest.fixture
def worker(stack):
    """The stack's worker, running with its own environment again after the test (the test
    stops it, and may change its environment)."""
    worker = stack.workers[0]
    env = dict(worker.env)
    yield worker
    if worker.process is not None and worker.process.poll() is None:
        worker.kill()
    worker.env = env
    worker.start()


def new_id() -> str:
    return "dr-" + uuid.uuid4().hex[:12]


def refused_socket(stack) -> int:
    """Open a socket and return the code it is closed with."""
    with connect(stack.ws_url(), open_timeout=20) as ws, pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=20)
    return closed.value.rcvd.code


def test_a_draining_worker_finishes_its_turns_then_exits(stack, worker, gates):
    gate = gates()
    stack.scripted.script(COMPLETIONS, gated_reply(gate), gated_reply(gate))
    on_socket, on_http = new_id(), new_id()
    idle = new_id()
    with stack.client() as client:
        assert client.put(f"/conversations/{idle}/title", json={"title": "idle"}).status_code == 200
    sock = Socket(stack.ws_url())
    try:
        send(sock, on_socket, "hi")
        events = until_event(sock, "text-delta")
        stream = Stream(stack.url, stack.headers(), on_http, "hello")
        wait_for(lambda: stream.saw("text-delta"), "the NDJSON turn to stream")

        worker.terminate()
        # The socket's client is told to reconnect; the socket itself goes on working.
        hint = sock.until(lambda f: f["type"] == "reconnect")[-1]
        assert hint == {"type": "reconnect", "reason": "shutdown"}
        report = httpx.get(stack.url + "/health", timeout=30)
        assert report.status_code == 503
        assert report.json() == {
            "ok": False,
            "database": "ok",
            "channelLayer": "ok",
            "draining": True,
            "runningTurns": 2,
        }
        # No new turns — by POST /chat, a socket, or a queued text on an idle conversation —
        # and no new sockets.
        with stack.client() as client:
            refused = client.post("/chat", json={"message": "new"})
            assert refused.status_code == 503 and refused.json() == {"error": SHUTTING_DOWN}
            queued = client.post(f"/conversations/{idle}/queue", json={"text": "x"})
            assert queued.status_code == 503 and queued.json() == {"error": SHUTTING_DOWN}
            assert history(client, idle)["chunks"] == []
        send(sock, new_id(), "another")
        assert sock.until(lambda f: f["type"] == "chat.error")[-1]["message"] == SHUTTING_DOWN
        assert refused_socket(stack) == GOING_AWAY

        gate.set()  # the running turns finish: the worker then exits by itself
        events += until_event(sock, "turn-sealed")
        assert_ended(events, "stop")
        assert stream.ended.wait(30)
        assert_ended(stream.events, "stop")
        assert worker.wait(EXIT_TIMEOUT) == 0
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                sock.recv()
        assert closed.value.rcvd.code == GOING_AWAY
    finally:
        sock.close()
    worker.start()  # to read what the drained worker stored
    with stack.client() as client:
        for cid, seen in ((on_socket, events), (on_http, stream.events)):
            assert log_of(history(client, cid)["chunks"]) == chunks_from_events(seen)
            assert [t["finishReason"] for t in sealed_turns(client, cid)] == ["stop"]


def test_turns_still_running_at_the_deadline_are_interrupted_after_their_last_step(
    stack, worker, gates
):
    worker.terminate()
    assert worker.wait(EXIT_TIMEOUT) == 0
    worker.env = worker.env | {"DISPATCH_DRAIN_SECONDS": "1"}
    worker.start()
    stack.scripted.script(
        COMPLETIONS, openai_tool_reply([("call_1", "list_files", {})]), gated_reply(gates())
    )
    conversation_id = new_id()
    with Socket(stack.ws_url()) as sock:
        send(sock, conversation_id, "look around")
        events = until_event(sock, "tool-result")
        events += until_event(sock, "text-delta")  # step 1 streams: step 0 is committed
        worker.terminate()
        events += until_event(sock, "turn-sealed")
    assert worker.wait(EXIT_TIMEOUT) == 0
    done = [e for e in events if e["type"] == "done"]
    assert [d["reason"] for d in done] == ["interrupted"]
    assert [e["type"] for e in events][-2:] == ["done", "turn-sealed"]
    worker.start()
    with stack.client() as client:
        step_1 = next(i for i, e in enumerate(events) if e["type"] == "text-delta")
        committed = chunks_from_events([*events[:step_1], {"type": "done"}])
        assert [chunk["type"] for _, chunk in committed] == ["text", "tool-call", "tool-result"]
        assert log_of(history(client, conversation_id)["chunks"]) == committed
        (turn,) = sealed_turns(client, conversation_id)
        assert turn["finishReason"] == "interrupted"
        assert [s["stepId"] for s in turn["steps"]] == [events[0]["turnId"] + "#0"]


def test_a_second_signal_stops_at_once_and_recovery_seals_the_turn(stack, worker, gates):
    stack.scripted.script(COMPLETIONS, gated_reply(gates()))
    conversation_id = new_id()
    with Socket(stack.ws_url()) as sock:
        send(sock, conversation_id, "hi")
        until_event(sock, "text-delta")
        worker.terminate()
        sock.until(lambda f: f["type"] == "reconnect")
        worker.terminate()
        assert worker.wait(EXIT_TIMEOUT) == 0
    worker.start()  # the only worker: start-up recovery seals what was left running
    with stack.client() as client:
        assert [t["finishReason"] for t in sealed_turns(client, conversation_id)] == ["interrupted"]

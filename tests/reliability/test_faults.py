"""Faults: every turn still ends with ``done`` + ``turn-sealed`` (or is recovered as
``interrupted``), clients catch up with ``GET /conversations/{id}?sinceSeq=``, and nothing
committed is lost. Providers that stall, cut or fail; a locked database; a SIGKILLed worker
(single-worker stack here; two workers, PostgreSQL and Redis in test_faults_cluster.py).
"""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import pytest

from tests.chat.live import COMPLETIONS, start_stack, wait_for
from tests.chat.providers.sse_server import (
    Reply,
    openai_chunk,
    openai_text_reply,
    openai_tool_reply,
)
from tests.chat.test_api_chat import gated_reply, history, sealed_turns
from tests.chat.test_ws import Socket
from tests.reliability.helpers import chunks_from_events, log_of

READ_TIMEOUT = 0.5  # the "impatient" credential's stall limit (seconds)
BUSY_TIMEOUT = 1.5  # the worker's SQLite busy timeout (seconds)
LOCK_HOLD = 0.3  # a brief lock: well inside the busy timeout
IMPATIENT = "impatient/test-model"
# The concurrent storm leaves an unknown number of replies unserved: they wait on their own path.
STORMY, STORMY_COMPLETIONS = "stormy/test-model", "/stormy/v1/chat/completions"
# More credentials on the same scripted server: one with a small provider read timeout.
IMPATIENT_CREDENTIAL = f"""
[[credentials]]
name = "impatient"
kind = "openai"
base_url = "MODEL_URL/v1"
api_key_env = "SCRIPTED_API_KEY"
models = ["test-model"]
read_timeout = {READ_TIMEOUT}

[[credentials]]
name = "stormy"
kind = "openai"
base_url = "MODEL_URL/stormy/v1"
api_key_env = "SCRIPTED_API_KEY"
models = ["test-model"]
"""


@pytest.fixture(scope="module")
def stack():
    yield from start_stack(
        {"DISPATCH_SQLITE_TIMEOUT": str(BUSY_TIMEOUT)}, config_extra=IMPATIENT_CREDENTIAL
    )


def new_id() -> str:
    return "f-" + uuid.uuid4().hex[:12]


def send(sock: Socket, conversation_id: str, message: str, model: str | None = None) -> None:
    frame = {"type": "chat.send", "conversationId": conversation_id, "message": message}
    sock.send(frame | ({"model": model} if model else {}))


def until_event(sock: Socket, kind: str) -> list[dict]:
    """The turn's events up to and including the first of type ``kind``."""
    frames = sock.until(lambda f: f["type"] == "chat.delta" and f["event"]["type"] == kind)
    return [f["event"] for f in frames if f["type"] == "chat.delta"]


def assert_ended(events: list[dict], reason: str) -> None:
    types = [e["type"] for e in events]
    assert types[:2] == ["user-message", "turn-start"]
    assert types[-2:] == ["done", "turn-sealed"]
    assert types.count("done") == 1
    assert events[-2]["reason"] == reason


def assert_resync(client, conversation_id: str, since: int, expected: list) -> None:
    """A client that last saw ``since`` gets exactly ``expected`` (and so does a full read)."""
    missing = history(client, conversation_id, sinceSeq=since)
    assert missing["chunks"] and missing["chunks"][0]["seq"] == since + 1
    assert log_of(missing["chunks"]) == expected
    assert missing["latestSeq"] == since + len(expected)
    assert log_of(history(client, conversation_id)["chunks"])[since:] == expected


# ---------------------------------------------------------------- a stalling provider


def test_stop_ends_a_stalled_stream_and_keeps_the_partial_text(stack, gates):
    stall = gates()
    stack.scripted.script(COMPLETIONS, Reply(events=[openai_chunk({"content": "Hel"}), stall]))
    conversation_id = new_id()
    with stack.client() as client, Socket(stack.ws_url()) as sock:
        send(sock, conversation_id, "say hello")
        events = until_event(sock, "text-delta")
        stopped = client.post(f"/conversations/{conversation_id}/stop").json()
        assert stopped == {"conversationId": conversation_id, "abortedTurn": True}
        events += until_event(sock, "turn-sealed")
        assert_ended(events, "aborted")
        assert_resync(client, conversation_id, 0, chunks_from_events(events))
        assert chunks_from_events(events)[-1] == ("assistant", {"type": "text", "text": "Hel"})
        assert sealed_turns(client, conversation_id)[0]["finishReason"] == "aborted"


def test_a_stream_silent_past_the_read_timeout_fails_the_turn(stack, gates):
    stall = gates()
    stack.scripted.script(COMPLETIONS, Reply(events=[openai_chunk({"content": "Hel"}), stall]))
    asked = len(stack.scripted.requests)
    conversation_id = new_id()
    with stack.client() as client, Socket(stack.ws_url()) as sock:
        send(sock, conversation_id, "say hello", IMPATIENT)
        events = until_event(sock, "turn-sealed")
        assert_ended(events, "error")
        error = next(e for e in events if e["type"] == "error")
        assert error["code"] == "timeout"
        # Content had streamed, so the step is not retried: the partial text stays.
        assert len(stack.scripted.requests) == asked + 1
        assert chunks_from_events(events)[1:] == [
            ("assistant", {"type": "text", "text": "Hel"}),
            ("assistant", {"type": "error", "message": error["message"], "code": "timeout"}),
        ]
        assert_resync(client, conversation_id, 0, chunks_from_events(events))
        assert sealed_turns(client, conversation_id)[0]["finishReason"] == "error"


def test_a_stall_before_any_content_is_retried(stack, gates):
    stack.scripted.script(
        COMPLETIONS, Reply(events=[gates()]), openai_text_reply("after the stall")
    )
    conversation_id = new_id()
    with stack.client() as client, Socket(stack.ws_url()) as sock:
        send(sock, conversation_id, "hi", IMPATIENT)
        events = until_event(sock, "turn-sealed")
        assert_ended(events, "stop")
        retries = [e for e in events if e["type"] == "provider-retry"]
        assert [(r["attempt"], r["code"]) for r in retries] == [(1, "timeout")]
        assert_resync(client, conversation_id, 0, chunks_from_events(events))
        assert chunks_from_events(events)[-1][1]["text"] == "after the stall"


# ---------------------------------------------------------------- a cut stream


def test_a_stream_cut_before_content_is_retried(stack):
    cut = Reply(events=[openai_chunk({"role": "assistant", "content": ""})], cut=True)
    stack.scripted.script(COMPLETIONS, cut, openai_text_reply("second try"))
    conversation_id = new_id()
    with stack.client() as client, Socket(stack.ws_url()) as sock:
        send(sock, conversation_id, "hi")
        events = until_event(sock, "turn-sealed")
        assert_ended(events, "stop")
        assert [e["attempt"] for e in events if e["type"] == "provider-retry"] == [1]
        assert "".join(e["delta"] for e in events if e["type"] == "text-delta") == "second try"
        assert_resync(client, conversation_id, 0, chunks_from_events(events))


def test_a_stream_cut_after_content_ends_in_error_and_keeps_the_partial(stack):
    cut = Reply(events=[openai_chunk({"role": "assistant", "content": "Partial"})], cut=True)
    stack.scripted.script(COMPLETIONS, cut)
    conversation_id = new_id()
    with stack.client() as client, Socket(stack.ws_url()) as sock:
        send(sock, conversation_id, "hi")
        events = until_event(sock, "turn-sealed")
        assert_ended(events, "error")
        assert not [e for e in events if e["type"] == "provider-retry"]
        logged = log_of(history(client, conversation_id)["chunks"])
        assert [chunk["type"] for _, chunk in logged] == ["text", "text", "error"]
        assert logged[1] == ("assistant", {"type": "text", "text": "Partial"})
        assert_resync(client, conversation_id, 0, chunks_from_events(events))


# ---------------------------------------------------------------- 429 / 5xx storms


def failure(status: int) -> Reply:
    return Reply(status=status, body={"error": {"type": "server_error", "message": "storm"}})


def test_a_storm_that_never_ends_exhausts_the_retries(stack):
    stack.scripted.script(COMPLETIONS, failure(500), failure(503), failure(500))
    conversation_id = new_id()
    with stack.client() as client, Socket(stack.ws_url()) as sock:
        send(sock, conversation_id, "hi")
        events = until_event(sock, "turn-sealed")
        assert_ended(events, "error")
        retries = [(e["attempt"], e["code"]) for e in events if e["type"] == "provider-retry"]
        assert retries == [(1, "http-500"), (2, "http-503")]  # the config allows two
        assert [e["code"] for e in events if e["type"] == "error"] == ["http-500"]
        assert log_of(history(client, conversation_id)["chunks"])[1] == (
            "assistant",
            {"type": "error", "message": "HTTP 500: storm", "code": "http-500"},
        )
        assert_resync(client, conversation_id, 0, chunks_from_events(events))
        assert sealed_turns(client, conversation_id)[0]["finishReason"] == "error"


def test_a_storm_that_ends_succeeds_after_retries(stack):
    stack.scripted.script(COMPLETIONS, failure(429), failure(429), openai_text_reply("finally"))
    conversation_id = new_id()
    with stack.client() as client, Socket(stack.ws_url()) as sock:
        send(sock, conversation_id, "hi")
        events = until_event(sock, "turn-sealed")
        assert_ended(events, "stop")
        assert [e["code"] for e in events if e["type"] == "provider-retry"] == ["http-429"] * 2
        assert_resync(client, conversation_id, 0, chunks_from_events(events))
        assert chunks_from_events(events)[-1][1] == {"type": "text", "text": "finally"}


def test_concurrent_turns_in_a_storm_all_end_properly(stack):
    turns = 6
    failures = 2 * turns  # more than some turns can absorb: some end in error, some succeed
    stack.scripted.script(
        STORMY_COMPLETIONS,
        *(failure(503) for _ in range(failures)),
        *(openai_text_reply(f"answer {n}") for n in range(turns)),
    )
    asked = len(stack.scripted.requests)
    ids = [new_id() for _ in range(turns)]
    by_conversation: dict[str, list[dict]] = {cid: [] for cid in ids}
    with stack.client() as client, Socket(stack.ws_url()) as sock:
        for cid in ids:
            send(sock, cid, "storm", STORMY)
        sealed = 0
        while sealed < turns:
            frame = sock.recv()
            assert frame["type"] != "chat.error", frame
            if frame["type"] == "chat.delta":
                event = frame["event"]
                by_conversation[event["conversationId"]].append(event)
                sealed += event["type"] == "turn-sealed"
        consumed_failures = requests = answered = 0
        for cid, events in by_conversation.items():
            reason = events[-2]["reason"]
            assert reason in ("stop", "error")
            assert_ended(events, reason)
            retries = sum(e["type"] == "provider-retry" for e in events)
            requests += retries + 1
            consumed_failures += retries + (reason == "error")
            answered += reason == "stop"
            assert retries == 2 if reason == "error" else retries <= 2
            assert_resync(client, cid, 0, chunks_from_events(events))
            assert sealed_turns(client, cid)[0]["finishReason"] == reason
    # The replies are served in order, so every failure was met before any success.
    assert consumed_failures == failures
    assert len(stack.scripted.requests) - asked == requests
    assert stack.scripted.pending(STORMY_COMPLETIONS) == turns - answered


# ---------------------------------------------------------------- a locked database


def lock_database(stack) -> sqlite3.Connection:
    """Another connection holding the write lock of the worker's SQLite database."""
    path = Path(stack.env["DISPATCH_VAR_DIR"]) / "dispatch.sqlite3"
    connection = sqlite3.connect(path, isolation_level=None, timeout=10)
    connection.execute("BEGIN EXCLUSIVE")
    return connection


def test_a_briefly_locked_database_delays_the_step_commit_and_loses_nothing(stack, gates):
    gate = gates()
    stack.scripted.script(COMPLETIONS, gated_reply(gate))
    conversation_id = new_id()
    with stack.client() as client, Socket(stack.ws_url()) as sock:
        send(sock, conversation_id, "hi")
        events = until_event(sock, "text-delta")  # the user message is committed
        lock = lock_database(stack)
        try:
            gate.set()
            events += until_event(sock, "step-complete")  # the step's commit is next
            # Nothing more while the lock is held: the commit waits on the busy timeout.
            with pytest.raises(TimeoutError):
                sock.ws.recv(timeout=LOCK_HOLD)
        finally:
            lock.execute("COMMIT")
            lock.close()
        events += until_event(sock, "turn-sealed")
        assert_ended(events, "stop")
        assert_resync(client, conversation_id, 0, chunks_from_events(events))
        assert chunks_from_events(events)[-1][1] == {"type": "text", "text": "Hello world"}


def test_a_lock_past_the_busy_timeout_fails_the_turn_which_still_seals(stack, gates):
    """Decision: a step the database refuses is not in the log; the turn ends ``error``, and
    sealing is retried until the database takes it, so ``turn-sealed`` still follows."""
    gate = gates()
    stack.scripted.script(COMPLETIONS, gated_reply(gate))
    conversation_id = new_id()
    worker = stack.workers[0]
    with stack.client() as client, Socket(stack.ws_url()) as sock:
        send(sock, conversation_id, "hi")
        events = until_event(sock, "text-delta")
        lock = lock_database(stack)
        try:
            gate.set()
            events += until_event(sock, "done")  # the step's commit gave up: an error turn
            turn_id = events[0]["turnId"]
            wait_for(
                lambda: (
                    f"WARNING chat.services.turns: conversation {conversation_id} turn {turn_id}: sealing failed"
                    in worker.output()
                ),
                "the first attempt to seal to fail on the lock",
            )
        finally:
            lock.execute("COMMIT")
            lock.close()
        events += until_event(sock, "turn-sealed")
        assert_ended(events, "error")
        error = next(e for e in events if e["type"] == "error")
        assert "database is locked" in error["message"]
        # Only what was committed before the lock: the user message.
        assert log_of(history(client, conversation_id)["chunks"]) == [
            ("user", {"type": "text", "text": "hi"})
        ]
        assert sealed_turns(client, conversation_id)[0]["finishReason"] == "error"
        # The conversation goes on, gap-free.
        stack.scripted.script(COMPLETIONS, openai_text_reply("fine again"))
        send(sock, conversation_id, "again")
        again = until_event(sock, "turn-sealed")
        assert_ended(again, "stop")
        assert_resync(client, conversation_id, 1, chunks_from_events(again))


# ---------------------------------------------------------------- a killed worker


@pytest.fixture
def lone_worker_stack():
    yield from start_stack()


def test_sigkill_mid_turns_then_restart_recovers_them_interrupted(lone_worker_stack, gates):
    stack = lone_worker_stack
    worker = stack.workers[0]
    ids = [new_id() for _ in range(3)]
    seen: dict[str, list[dict]] = {}
    sockets = [Socket(stack.ws_url()) for _ in ids]
    try:
        # One after another, so each gets its own two replies from the in-order script.
        for cid, sock in zip(ids, sockets, strict=True):
            stack.scripted.script(
                COMPLETIONS, openai_tool_reply([("call_1", "list_files", {})]), gated_reply(gates())
            )
            send(sock, cid, "look around")
            events = until_event(sock, "tool-result")
            # Step 1 streams: step 0 (call + result) was committed before it began.
            seen[cid] = events + until_event(sock, "text-delta")
        worker.kill()
    finally:
        for sock in sockets:
            sock.close()
    worker.start()  # the same database: start-up recovery runs before it serves

    with stack.client() as client:
        for cid, events in seen.items():
            step_1 = next(i for i, e in enumerate(events) if e["type"] == "text-delta")
            committed = chunks_from_events([*events[:step_1], {"type": "done"}])
            assert [chunk["type"] for _, chunk in committed] == ["text", "tool-call", "tool-result"]
            # The client saw no seq yet: a resync from 0 gets every committed chunk.
            assert_resync(client, cid, 0, committed)
            turns = sealed_turns(client, cid)
            assert [t["finishReason"] for t in turns] == ["interrupted"]
            assert turns[0]["turnId"] == events[0]["turnId"]
        # The log goes on gap-free in a recovered conversation.
        stack.scripted.script(COMPLETIONS, openai_text_reply("after the crash"))
        with Socket(stack.ws_url()) as sock:
            send(sock, ids[0], "again")
            again = until_event(sock, "turn-sealed")
        assert_ended(again, "stop")
        assert_resync(client, ids[0], 3, chunks_from_events(again))

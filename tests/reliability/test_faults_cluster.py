"""Faults with two Daphne workers sharing PostgreSQL and Redis: Redis restarting under running
turns, and a worker SIGKILLed mid-turn (the other worker's sweep recovers its turns).
"""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.chat.live import COMPLETIONS, cluster_env, start_stack, wait_for
from tests.chat.providers.sse_server import openai_text_reply, openai_tool_reply
from tests.chat.test_api_chat import gated_reply, history, ndjson, sealed_turns
from tests.chat.test_ws import Socket
from tests.reliability.helpers import chunks_from_events, log_of
from tests.reliability.test_faults import assert_ended, assert_resync, send, until_event
from tests.servers import RedisServer


@pytest.fixture(scope="module")
def redis():
    """This module's own Redis: restarting it must not disturb other suites."""
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def cluster(postgres_server, redis):
    yield from start_stack(cluster_env(postgres_server, redis.url, "faults"), workers=2)


def new_id() -> str:
    return "rc-" + uuid.uuid4().hex[:12]


def test_turns_running_through_a_redis_restart_end_sealed_and_clients_resync(cluster, redis, gates):
    conversation_id = new_id()
    with cluster.client(worker=0) as a, cluster.client(worker=1) as b:
        cluster.scripted.script(COMPLETIONS, openai_text_reply("before"))
        assert a.post("/chat", json={"message": "one", "conversationId": conversation_id})
        seen_seq = history(b, conversation_id)["latestSeq"]  # what the watcher has
        assert seen_seq == 2

        gate = gates()
        cluster.scripted.script(COMPLETIONS, gated_reply(gate))
        sender = Socket(cluster.ws_url(worker=0))
        watcher = Socket(cluster.ws_url(worker=1))
        try:
            watcher.send({"type": "chat.subscribe", "conversationId": conversation_id})
            send(sender, conversation_id, "two")
            live = until_event(sender, "text-delta")
            watched = until_event(watcher, "text-delta")
            assert watched == live  # fan-out across workers works before the fault

            redis.process.terminate()  # Redis goes away in the middle of the turn
            redis.process.wait()
            gate.set()  # the turn streams on while every group_send fails
            turns = wait_for(
                lambda: (turns := sealed_turns(a, conversation_id))[1:] and turns,
                "the turn to be sealed with Redis down",
            )
            assert turns[1]["finishReason"] == "stop"
            redis.start()
        finally:
            sender.close()
            watcher.close()
        expected = [
            ("user", {"type": "text", "text": "two"}),
            ("assistant", {"type": "text", "text": "Hello world"}),
        ]
        # Resync from the last seq each client had: exactly the missing chunks, from either worker.
        assert_resync(b, conversation_id, seen_seq, expected)
        assert_resync(a, conversation_id, seen_seq, expected)
        # The clients lost the rest of the turn with the layer; what they saw is in the log.
        for events in (live, watched):
            seen_text = "".join(e["delta"] for e in events if e["type"] == "text-delta")
            assert seen_text and "Hello world".startswith(seen_text)

        # Both workers serve again: a new turn on A streams to a new socket on B ...
        cluster.scripted.script(COMPLETIONS, openai_text_reply("after"))
        with Socket(cluster.ws_url(worker=1)) as watcher:
            watcher.send({"type": "chat.subscribe", "conversationId": conversation_id})
            response = a.post("/chat", json={"message": "three", "conversationId": conversation_id})
            assert response.status_code == 200, response.text
            streamed = ndjson(response)
            assert watcher.deltas_until_sealed() == streamed
        assert_ended(streamed, "stop")
        assert_resync(b, conversation_id, 4, chunks_from_events(streamed))
        # ... and one started on B's socket streams back to it.
        cluster.scripted.script(COMPLETIONS, openai_text_reply("and more"))
        with Socket(cluster.ws_url(worker=1)) as sock:
            send(sock, conversation_id, "four")
            events = until_event(sock, "turn-sealed")
        assert_ended(events, "stop")
        assert_resync(a, conversation_id, 6, chunks_from_events(events))


def test_a_killed_worker_s_multi_step_turn_is_recovered_by_the_other_s_sweep(cluster, gates):
    conversation_id = new_id()
    victim = cluster.workers[0]
    cluster.scripted.script(
        COMPLETIONS, openai_tool_reply([("call_1", "list_files", {})]), gated_reply(gates())
    )
    watcher = Socket(cluster.ws_url(worker=1))
    try:
        watcher.send({"type": "chat.subscribe", "conversationId": conversation_id})
        with Socket(cluster.ws_url(worker=0)) as sock:
            send(sock, conversation_id, "look around")
            events = until_event(sock, "tool-result")
            events += until_event(sock, "text-delta")  # step 1 streams: step 0 is committed
            watched = until_event(watcher, "text-delta")
            assert watched == events  # B's subscriber follows the turn A runs
            victim.kill()
        # B's sweep announces the recovered seal like a normal one, after its commit: the
        # subscriber hears done{interrupted} and turn-sealed, then the status change.
        frames = watcher.until(lambda f: f["type"] == "conversation.statusChanged")
    finally:
        watcher.close()
    closing = [f["event"] for f in frames if f["type"] == "chat.delta"]
    assert [e["type"] for e in closing] == ["done", "turn-sealed"]
    assert closing[0]["reason"] == "interrupted"
    assert {e["turnId"] for e in closing} == {events[0]["turnId"]}
    assert frames[-1] == {
        "type": "conversation.statusChanged",
        "conversationId": conversation_id,
        "status": "idle",
    }
    try:
        with cluster.client(worker=1) as b:
            turns = sealed_turns(b, conversation_id)
            assert [t["finishReason"] for t in turns] == ["interrupted"]
            assert turns[0]["turnId"] == events[0]["turnId"]
            step_1 = next(i for i, e in enumerate(events) if e["type"] == "text-delta")
            committed = chunks_from_events([*events[:step_1], {"type": "done"}])
            assert [chunk["type"] for _, chunk in committed] == ["text", "tool-call", "tool-result"]
            assert_resync(b, conversation_id, 0, committed)
            # The surviving worker carries the conversation on, gap-free.
            cluster.scripted.script(COMPLETIONS, openai_text_reply("carry on"))
            with Socket(cluster.ws_url(worker=1)) as sock:
                send(sock, conversation_id, "again")
                again = until_event(sock, "turn-sealed")
            assert_ended(again, "stop")
            assert_resync(b, conversation_id, 3, chunks_from_events(again))
            assert log_of(history(b, conversation_id)["chunks"])[-1][1]["text"] == "carry on"
    finally:
        victim.start()
        with httpx.Client(base_url=victim.url) as probe:
            assert probe.get("/health").status_code == 200

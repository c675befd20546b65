"""Two Daphne workers sharing a real PostgreSQL and a real Redis (docs/protocol.md#6-websocket-json-protocol, several workers)."""

from __future__ import annotations

import json
import threading
import uuid

import pytest

from tests.chat.live import COMPLETIONS, cluster_env, start_stack, wait_for
from tests.chat.providers.sse_server import openai_text_reply, openai_tool_reply
from tests.chat.test_api_chat import gated_reply, history, sealed_turns
from tests.chat.test_ws import Socket


@pytest.fixture(scope="module")
def cluster(postgres_server, redis_server):
    yield from start_stack(cluster_env(postgres_server, redis_server.url, "cluster"), workers=2)


def test_turn_on_a_watched_from_b_and_stopped_through_b(cluster):
    gate = threading.Event()
    cluster.scripted.script(COMPLETIONS, gated_reply(gate))
    conversation_id = "c-" + uuid.uuid4().hex[:10]
    with (
        cluster.client(worker=0) as a,
        cluster.client(worker=1) as b,
        Socket(cluster.ws_url(worker=1)) as watcher,
    ):
        with a.stream(
            "POST", "/chat", json={"message": "hi", "conversationId": conversation_id}
        ) as r:
            streamed = []
            for line in r.iter_lines():
                streamed.append(json.loads(line))
                if streamed[-1]["type"] == "text-delta" and len(streamed) == 3:
                    watcher.send({"type": "chat.subscribe", "conversationId": conversation_id})
                    # The replay from A arrives on B's socket: everything so far, in order.
                    replay = watcher.until(
                        lambda f: f["type"] == "chat.delta" and f["event"]["type"] == "text-delta"
                    )
                    stopped = b.post(f"/conversations/{conversation_id}/stop").json()
                    assert stopped == {"conversationId": conversation_id, "abortedTurn": True}
        gate.set()
        seen = [f["event"] for f in replay if f["type"] == "chat.delta"]
        seen += watcher.deltas_until_sealed()
        assert seen == streamed  # nothing missing, nothing doubled
        assert [e["type"] for e in seen[-2:]] == ["done", "turn-sealed"]
        assert seen[-2]["reason"] == "aborted"
        # What the watcher saw is what the log kept.
        chunks = history(b, conversation_id)["chunks"]
        assert [c["chunk"]["text"] for c in chunks] == [
            "hi",
            "".join(e["delta"] for e in seen if e["type"] == "text-delta"),
        ]
        assert sealed_turns(b, conversation_id)[0]["finishReason"] == "aborted"


def test_full_tool_turn_across_workers_matches_the_history(cluster):
    cluster.scripted.script(
        COMPLETIONS,
        openai_tool_reply([("call_a", "list_files", {})]),
        openai_text_reply("Nothing here."),
    )
    conversation_id = "c-" + uuid.uuid4().hex[:10]
    with Socket(cluster.ws_url(worker=1)) as watcher, cluster.client(worker=0) as a:
        watcher.send({"type": "chat.subscribe", "conversationId": conversation_id})
        # A subscription to a not-yet-existing conversation is allowed; the turn starts on A.
        a.post("/chat", json={"message": "files?", "conversationId": conversation_id})
        events = watcher.deltas_until_sealed()
        chunks = history(a, conversation_id)["chunks"]
    calls = [e for e in events if e["type"] == "tool-call"]
    results = [e for e in events if e["type"] == "tool-result"]
    text = "".join(e["delta"] for e in events if e["type"] == "text-delta")
    assert [c["chunk"] for c in chunks if c["chunk"]["type"] == "tool-call"] == [
        {k: v for k, v in call.items() if k not in {"conversationId", "turnId"}}
        | {"type": "tool-call"}
        for call in calls
    ]
    assert [c["chunk"]["toolCallId"] for c in chunks if c["chunk"]["type"] == "tool-result"] == [
        r["toolCallId"] for r in results
    ]
    assert chunks[-1]["chunk"] == {"type": "text", "text": text}
    assert [c["seq"] for c in chunks] == list(range(1, len(chunks) + 1))


def test_a_killed_worker_s_turn_is_sealed_interrupted_by_the_sweep(cluster):
    gate = threading.Event()
    cluster.scripted.script(COMPLETIONS, gated_reply(gate))
    conversation_id = "c-" + uuid.uuid4().hex[:10]
    victim = cluster.workers[0]
    with cluster.client(worker=1) as b:
        with (
            cluster.client(worker=0) as a,
            a.stream(
                "POST", "/chat", json={"message": "x", "conversationId": conversation_id}
            ) as r,
        ):
            for line in r.iter_lines():
                if json.loads(line)["type"] == "text-delta":
                    victim.kill()
                    break
        turns = wait_for(lambda: sealed_turns(b, conversation_id), "the sweep on B to seal it")
        assert turns[0]["finishReason"] == "interrupted"
        assert [c["seq"] for c in history(b, conversation_id)["chunks"]] == [1]
        # The conversation is usable again through the surviving worker.
        cluster.scripted.script(COMPLETIONS, openai_text_reply("back"))
        again = b.post("/chat", json={"message": "again", "conversationId": conversation_id})
        assert again.status_code == 200, again.text
        assert [c["seq"] for c in history(b, conversation_id)["chunks"]] == [1, 2, 3]
    gate.set()
    victim.start()

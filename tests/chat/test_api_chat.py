"""POST /chat and the turn endpoints, against a real Daphne and a scripted OpenAI-format model."""

from __future__ import annotations

import json
import threading
import uuid

import httpx
import pytest

from tests.chat.live import COMPLETIONS, MODEL, ndjson, wait_for
from tests.chat.providers.sse_server import (
    Reply,
    openai_chunk,
    openai_text_reply,
    openai_tool_reply,
    openai_usage,
)


def new_id() -> str:
    return "t-" + uuid.uuid4().hex[:12]


def gated_reply(gate: threading.Event, before: str = "Hello", after: str = " world") -> Reply:
    """A text answer that streams ``before``, then waits for ``gate``, then finishes."""
    return Reply(
        events=[
            openai_chunk({"role": "assistant", "content": before}),
            gate,
            openai_chunk({"content": after}),
            openai_chunk({}, "stop"),
            openai_chunk(usage=openai_usage(12, 4)),
            "[DONE]",
        ]
    )


def history(client: httpx.Client, conversation_id: str, **params) -> dict:
    response = client.get(f"/conversations/{conversation_id}", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def sealed_turns(client: httpx.Client, conversation_id: str) -> list[dict]:
    response = client.get(f"/conversations/{conversation_id}/metrics")
    assert response.status_code == 200, response.text
    return response.json()["turns"]


def test_text_turn_streams_ndjson_from_user_message_to_turn_sealed(stack):
    stack.scripted.script(COMPLETIONS, openai_text_reply("Hello there!"))
    with stack.client() as client:
        response = client.post("/chat", json={"message": "Hi"})
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        conversation_id = response.headers["X-Conversation-Id"]
        events = ndjson(response)
        types = [e["type"] for e in events]
        assert types[:2] == ["user-message", "turn-start"]
        assert types[-2:] == ["done", "turn-sealed"]
        assert "step-complete" in types and "usage" in types
        assert all(e["conversationId"] == conversation_id for e in events)
        turn_id = events[0]["turnId"]
        assert turn_id.startswith("turn-")
        assert all(e["turnId"] == turn_id for e in events if e["type"] != "status")
        text = "".join(e["delta"] for e in events if e["type"] == "text-delta")
        assert text == "Hello there!"
        done = events[-2]
        assert done["reason"] == "stop"
        assert done["usage"] == {"inputTokens": 10, "outputTokens": 5}
        assert done["contextSize"] == 15

        # turn-sealed went out after the commit: another connection sees everything now.
        log = history(client, conversation_id)
        assert [c["seq"] for c in log["chunks"]] == [1, 2]
        assert [(c["role"], c["chunk"]) for c in log["chunks"]] == [
            ("user", {"type": "text", "text": "Hi"}),
            ("assistant", {"type": "text", "text": "Hello there!"}),
        ]
        assert log["latestSeq"] == 2
        turns = sealed_turns(client, conversation_id)
        assert [t["turnId"] for t in turns] == [turn_id]
        assert turns[0]["finishReason"] == "stop"
        assert turns[0]["model"] == MODEL
        listed = client.get("/conversations").json()["conversations"]
        mine = next(c for c in listed if c["id"] == conversation_id)
        assert mine["title"] == "Hi" and mine["status"] == "idle" and mine["model"] == MODEL


def test_a_mid_turn_error_does_not_end_the_stream(stack):
    stack.scripted.script(COMPLETIONS, Reply(status=400, body={"error": {"message": "bad prompt"}}))
    with stack.client() as client:
        events = ndjson(client.post("/chat", json={"message": "x", "conversationId": new_id()}))
    types = [e["type"] for e in events]
    assert types[-3:] == ["error", "done", "turn-sealed"]
    assert events[-2]["reason"] == "error"
    assert "bad prompt" in events[-3]["message"]


def test_retryable_errors_are_retried_with_provider_retry_events(stack):
    stack.scripted.script(
        COMPLETIONS,
        Reply(status=429, body={"error": {"message": "slow down"}}),
        openai_text_reply("ok"),
    )
    with stack.client() as client:
        events = ndjson(client.post("/chat", json={"message": "x", "conversationId": new_id()}))
    retries = [e for e in events if e["type"] == "provider-retry"]
    assert [r["attempt"] for r in retries] == [1]
    assert events[-2]["reason"] == "stop"


def test_second_turn_while_one_runs_is_409_and_disconnect_does_not_stop_the_turn(stack):
    gate = threading.Event()
    stack.scripted.script(COMPLETIONS, gated_reply(gate))
    conversation_id = new_id()
    with stack.client() as client:
        with client.stream(
            "POST", "/chat", json={"message": "a", "conversationId": conversation_id}
        ) as r:
            lines = r.iter_lines()
            seen = []
            for line in lines:
                seen.append(json.loads(line))
                if seen[-1]["type"] == "text-delta":
                    break
            busy = client.post("/chat", json={"message": "b", "conversationId": conversation_id})
            assert busy.status_code == 409
            assert "already running" in busy.json()["error"]
        # The client went away mid-turn; the turn goes on and seals.
        gate.set()
        turns = wait_for(lambda: sealed_turns(client, conversation_id), "the turn to seal")
        assert turns[0]["finishReason"] == "stop"
        texts = [c["chunk"].get("text") for c in history(client, conversation_id)["chunks"]]
        assert texts == ["a", "Hello world"]


def test_unknown_model_is_400_before_anything_is_stored(stack):
    conversation_id = new_id()
    with stack.client() as client:
        response = client.post(
            "/chat", json={"message": "x", "conversationId": conversation_id, "model": "nope/x"}
        )
        assert response.status_code == 400
        assert "nope/x" in response.json()["error"]
        assert history(client, conversation_id) == {"chunks": [], "latestSeq": 0}
        listed = client.get("/conversations", params={"q": conversation_id}).json()
        assert listed["conversations"] == []


@pytest.mark.parametrize(
    "body, fragment",
    [
        ({}, "message"),
        ({"message": ""}, "message"),
        ({"message": 5}, "message"),
        ({"message": "x", "model": 3}, "model"),
        ({"message": "x", "reasoningEffort": "extreme"}, "reasoningEffort"),
        ({"message": "x", "conversationId": "../etc"}, "conversationId"),
    ],
)
def test_invalid_chat_bodies_are_400_with_a_clear_message(stack, body, fragment):
    with stack.client() as client:
        response = client.post("/chat", json=body)
    assert response.status_code == 400
    assert fragment in response.json()["error"]


def test_malformed_json_is_400(stack):
    with stack.client() as client:
        response = client.post(
            "/chat", content=b"{not json", headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 400
    assert "JSON" in response.json()["error"]


def test_stop_aborts_the_running_turn_and_keeps_partial_text(stack):
    gate = threading.Event()
    stack.scripted.script(COMPLETIONS, gated_reply(gate))
    conversation_id = new_id()
    with stack.client() as client:
        with client.stream(
            "POST", "/chat", json={"message": "a", "conversationId": conversation_id}
        ) as r:
            events = []
            for line in r.iter_lines():
                events.append(json.loads(line))
                if events[-1]["type"] == "text-delta":
                    stopped = client.post(f"/conversations/{conversation_id}/stop")
                    assert stopped.json() == {
                        "conversationId": conversation_id,
                        "abortedTurn": True,
                    }
        gate.set()
        assert [e["type"] for e in events[-2:]] == ["done", "turn-sealed"]
        assert events[-2]["reason"] == "aborted"
        again = client.post(f"/conversations/{conversation_id}/stop").json()
        assert again == {"conversationId": conversation_id, "abortedTurn": False}
        texts = [c["chunk"]["text"] for c in history(client, conversation_id)["chunks"]]
        assert texts == ["a", "Hello"]


def test_queue_steers_a_running_turn_or_starts_one(stack):
    conversation_id = new_id()
    with stack.client() as client:
        # No turn running: the text starts one.
        stack.scripted.script(COMPLETIONS, openai_text_reply("first"))
        started = client.post(f"/conversations/{conversation_id}/queue", json={"text": "go"})
        assert started.status_code == 200
        assert started.json()["startedTurn"] is True
        wait_for(lambda: sealed_turns(client, conversation_id), "the first turn")

        # A turn running: the text is queued, then carried into a new turn after it ends.
        gate = threading.Event()
        stack.scripted.script(COMPLETIONS, gated_reply(gate), openai_text_reply("carried"))
        with client.stream(
            "POST", "/chat", json={"message": "b", "conversationId": conversation_id}
        ) as r:
            for line in r.iter_lines():
                if json.loads(line)["type"] == "text-delta" and not gate.is_set():
                    queued = client.post(
                        f"/conversations/{conversation_id}/queue", json={"text": "later"}
                    )
                    body = queued.json()
                    assert body["startedTurn"] is False
                    assert [q["text"] for q in body["queue"]] == ["later"]
                    cancel_me = client.post(
                        f"/conversations/{conversation_id}/queue", json={"text": "cancel me"}
                    ).json()["queue"][-1]["id"]
                    cancelled = client.delete(f"/conversations/{conversation_id}/queue/{cancel_me}")
                    assert cancelled.json()["cancelled"] is True
                    assert [q["text"] for q in cancelled.json()["queue"]] == ["later"]
                    gate.set()
        turns = wait_for(
            lambda: (t := sealed_turns(client, conversation_id)) and len(t) == 3 and t, "carry turn"
        )
        assert [t["finishReason"] for t in turns] == ["stop", "stop", "stop"]
        texts = [c["chunk"]["text"] for c in history(client, conversation_id)["chunks"]]
        assert texts == ["go", "first", "b", "Hello world", "later", "carried"]


def test_two_step_tool_turn_through_the_api(stack):
    conversation_id = new_id()
    workspace = stack.workspace() / "project"
    workspace.mkdir(parents=True, exist_ok=True)
    (workspace / "notes.txt").write_text("hello")
    stack.scripted.script(
        COMPLETIONS,
        openai_tool_reply([("call_1", "list_files", {})]),
        openai_text_reply("There are no files."),
    )
    with stack.client() as client:
        events = ndjson(
            client.post(
                "/chat",
                json={
                    "message": "what files?",
                    "conversationId": conversation_id,
                    "cwd": "project",
                },
            )
        )
        types = [e["type"] for e in events]
        assert types.count("step-complete") == 2
        call = next(e for e in events if e["type"] == "tool-call")
        result = next(e for e in events if e["type"] == "tool-result")
        assert call["stepId"] == f"{events[0]['turnId']}#0"
        assert (result["toolCallId"], result["isError"]) == ("call_1", False)
        assert "notes.txt" in result["content"]
        assert types.index("tool-result") > types.index("step-complete")
        chunks = history(client, conversation_id)["chunks"]
        assert [(c["role"], c["chunk"]["type"]) for c in chunks] == [
            ("user", "text"),
            ("assistant", "tool-call"),
            ("tool", "tool-result"),
            ("assistant", "text"),
        ]
        assert chunks[1]["chunk"]["stepId"] == chunks[2]["chunk"]["stepId"] == call["stepId"]
        turn = sealed_turns(client, conversation_id)[0]
        assert [s["stepId"] for s in turn["steps"]] == [call["stepId"], f"{events[0]['turnId']}#1"]
        assert turn["usage"] == {"inputTokens": 20, "outputTokens": 10}
    # The provider saw the tool result in the second step's prompt.
    second = [r for r in stack.scripted.requests if r.path == COMPLETIONS][-1].body
    assert any(m["role"] == "tool" and m["tool_call_id"] == "call_1" for m in second["messages"])


def test_sticky_settings_and_models(stack):
    conversation_id = new_id()
    with stack.client() as client:
        models = client.get("/models").json()
        assert models["models"] == [MODEL, "scripted/other-model"]
        assert models["modelInfo"][MODEL] == {"contextWindow": 8192, "vision": False}
        assert client.get(f"/conversations/{conversation_id}/model").json()["model"] == MODEL
        put = client.put(
            f"/conversations/{conversation_id}/model", json={"model": "scripted/other-model"}
        )
        assert put.json() == {"conversationId": conversation_id, "model": "scripted/other-model"}
        assert (
            client.put(f"/conversations/{conversation_id}/model", json={"model": "x/y"}).status_code
            == 400
        )
        assert (
            client.get(f"/conversations/{conversation_id}/reasoning-effort").json()[
                "reasoningEffort"
            ]
            == "high"
        )
        client.put(
            f"/conversations/{conversation_id}/reasoning-effort", json={"reasoningEffort": "low"}
        )
        assert (
            client.get(f"/conversations/{conversation_id}/reasoning-effort").json()[
                "reasoningEffort"
            ]
            == "low"
        )
        bad = client.put(
            f"/conversations/{conversation_id}/reasoning-effort", json={"reasoningEffort": "hi"}
        )
        assert bad.status_code == 400
        client.put(f"/conversations/{conversation_id}/title", json={"title": "Named"})
        assert client.get(f"/conversations/{conversation_id}/title").json()["title"] == "Named"

        stack.scripted.script(COMPLETIONS, openai_text_reply("ok"))
        events = ndjson(
            client.post("/chat", json={"message": "x", "conversationId": conversation_id})
        )
        assert events[-1]["type"] == "turn-sealed"
    request = stack.scripted.requests[-1].body
    assert request["model"] == "other-model"  # the sticky model was used
    assert sealed_turns(stack.client(), conversation_id)[0]["model"] == "scripted/other-model"


def test_history_window_and_errors(stack):
    conversation_id = new_id()
    stack.scripted.script(COMPLETIONS, openai_text_reply("one"), openai_text_reply("two"))
    with stack.client() as client:
        for message in ("a", "b"):
            ndjson(
                client.post("/chat", json={"message": message, "conversationId": conversation_id})
            )
        assert [c["seq"] for c in history(client, conversation_id)["chunks"]] == [1, 2, 3, 4]
        tail = history(client, conversation_id, limit=2)
        assert [c["seq"] for c in tail["chunks"]] == [3, 4] and tail["latestSeq"] == 4
        window = history(client, conversation_id, sinceSeq=1, beforeSeq=4)
        assert [c["seq"] for c in window["chunks"]] == [2, 3]
        assert history(client, conversation_id, sinceSeq=9) == {"chunks": [], "latestSeq": 9}
        for params in ({"limit": 0}, {"beforeSeq": 0}, {"sinceSeq": -1}, {"limit": "x"}):
            response = client.get(f"/conversations/{conversation_id}", params=params)
            assert response.status_code == 400, params
            assert "error" in response.json()
    with stack.client("bob") as other:
        response = other.get(f"/conversations/{conversation_id}")
        assert response.status_code == 404
        assert "one" not in response.text


def test_health_and_auth(stack):
    assert httpx.get(stack.url + "/health").json() == {
        "ok": True,
        "database": "ok",
        "channelLayer": "ok",
        "draining": False,
        "runningTurns": 0,
    }
    anonymous = httpx.get(stack.url + "/conversations")
    assert anonymous.status_code == 401
    assert "error" in anonymous.json()


def test_cwd_must_stay_inside_the_users_workspace(stack):
    bob_root = stack.workspace("bob")
    with stack.client() as client:
        for cwd in (
            "../outside",
            "/etc",
            "a/../../b",
            f"../{stack.user_ids['bob']}",
            str(bob_root),
        ):
            response = client.post(
                "/chat", json={"message": "x", "conversationId": new_id(), "cwd": cwd}
            )
            assert response.status_code == 400, cwd
            assert response.json() == {"error": "cwd: must be a directory inside your workspace"}

"""Long conversations through a real worker: compaction (manual and automatic), the context
budget's refusal, Continue, windows from model listings, and a restart during compaction
(docs/protocol.md#24-compaction, #410-the-context-budget, #411-continue)."""

from __future__ import annotations

import json
import threading

import httpx
import pytest
from websockets.sync.client import connect

from chat.runtime.context import SUMMARY_INTRO
from chat.services.turns import CONTINUE_PROMPT
from tests.chat.live import COMPLETIONS, ndjson, start_stack, wait_for
from tests.chat.providers.sse_server import (
    OPENAI_DONE,
    Reply,
    openai_chunk,
    openai_models_reply,
    openai_text_reply,
    openai_usage,
)
from tests.chat.test_api_chat import history, sealed_turns

TINY = "tiny/tiny-model"  # a 1,200-token window, for the automatic cases
EXTRA = """
[[credentials]]
name = "tiny"
kind = "openai"
base_url = "MODEL_URL/v1"
api_key_env = "SCRIPTED_API_KEY"
models = ["tiny-model"]
context_window = 1200

[[credentials]]
name = "listed"
kind = "openai"
base_url = "MODEL_URL/v1"
api_key_env = "SCRIPTED_API_KEY"
"""


@pytest.fixture(scope="module")
def stack():
    yield from start_stack(config_extra=EXTRA)


def turns(stack, client: httpx.Client, conversation_id: str, count: int, **fields) -> None:
    """``count`` quick turns: "message <n>" answered "answer <n>"."""
    for n in range(1, count + 1):
        stack.scripted.script(COMPLETIONS, openai_text_reply(f"answer {n}"))
        body = {"message": f"message {n}", "conversationId": conversation_id, **fields}
        assert ndjson(client.post("/chat", json=body))[-1]["type"] == "turn-sealed"


def sent_texts(request) -> str:
    return json.dumps(request.body["messages"])


def test_compact_summarizes_the_older_part_and_later_turns_see_only_the_rest(stack):
    conversation_id = "compact-1"
    with stack.client() as client:
        turns(stack, client, conversation_id, 6)  # 12 messages: 2 to summarize, 10 kept
        stack.scripted.script(COMPLETIONS, openai_text_reply("SUMMARY ONE"))

        response = client.post(f"/conversations/{conversation_id}/compact")

        assert response.status_code == 200, response.text
        answer = response.json()
        assert {k: answer[k] for k in ("seq", "upToSeq", "replacedMessages", "keptMessages")} == {
            "seq": 13,
            "upToSeq": 2,
            "replacedMessages": 2,
            "keptMessages": 10,
        }
        assert answer["summary"] == "SUMMARY ONE"
        assert answer["usage"] == {"inputTokens": 10, "outputTokens": 5}
        summary_request = stack.scripted.requests[-1]
        assert "tools" not in summary_request.body
        assert "User: message 1" in sent_texts(summary_request)
        assert "message 2" not in sent_texts(summary_request)  # kept verbatim

        # The log keeps everything; the summary is one more chunk.
        chunks = history(client, conversation_id)["chunks"]
        assert [c["seq"] for c in chunks] == list(range(1, 14))
        assert chunks[-1]["role"] == "system"
        assert chunks[-1]["chunk"] == {
            "type": "compaction",
            "summary": "SUMMARY ONE",
            "upToSeq": 2,
            "replacedMessages": 2,
            "keptMessages": 10,
            "trigger": "manual",
            "stepId": f"{answer['turnId']}#c0",
        }
        compaction = sealed_turns(client, conversation_id)[-1]
        assert compaction["kind"] == "compaction" and compaction["finishReason"] == "compacted"
        assert compaction["steps"][0]["kind"] == "compaction"

        # The next turn is sent the summary, then the 10 kept messages, then its prompt.
        stack.scripted.script(COMPLETIONS, openai_text_reply("answer 7"))
        ndjson(
            client.post("/chat", json={"message": "message 7", "conversationId": conversation_id})
        )
        sent = stack.scripted.requests[-1].body["messages"]
        assert sent[0]["role"] == "user" and sent[0]["content"].startswith(SUMMARY_INTRO)
        assert "SUMMARY ONE" in sent[0]["content"]
        assert [m["content"] for m in sent[1:3]] == ["message 2", "answer 2"]
        assert sent[-1]["content"] == "message 7" and "message 1" not in json.dumps(sent)

        # A second compaction summarizes the first summary too.
        turns(stack, client, conversation_id, 1)
        stack.scripted.script(COMPLETIONS, openai_text_reply("SUMMARY TWO"))
        second = client.post(f"/conversations/{conversation_id}/compact").json()
        assert "<earlier-summary>\\nSUMMARY ONE" in sent_texts(stack.scripted.requests[-1])
        assert second["replacedMessages"] == 4 and second["upToSeq"] == 6


def test_compaction_refusals(stack):
    with stack.client() as client:
        turns(stack, client, "short-1", 2)
        short = client.post("/conversations/short-1/compact")
        assert short.status_code == 400
        assert short.json()["error"].startswith("the conversation is too short to compact")
        missing = client.post("/conversations/never-seen/compact")
        assert missing.status_code == 400

        turns(stack, client, "empty-summary", 6)
        before = history(client, "empty-summary")
        stack.scripted.script(COMPLETIONS, openai_text_reply("   "))
        empty = client.post("/conversations/empty-summary/compact")
        assert empty.status_code == 422
        assert empty.json() == {"error": "compaction failed: the model returned an empty summary"}
        assert history(client, "empty-summary") == before  # nothing written

        gate = threading.Event()
        stack.scripted.script(COMPLETIONS, Reply(events=[gate, *openai_text_reply("late").events]))
        with client.stream(
            "POST", "/chat", json={"message": "wait", "conversationId": "empty-summary"}
        ) as running:
            next(running.iter_lines())  # the turn runs
            busy = client.post("/conversations/empty-summary/compact")
            gate.set()
        assert busy.status_code == 409
        assert busy.json() == {"error": "a turn is already running in this conversation"}


def test_the_threshold_is_per_conversation_and_checked(stack):
    with stack.client() as client:
        path = "/conversations/threshold-1/compaction"
        assert client.get(path).json() == {"conversationId": "threshold-1", "threshold": 85}
        assert client.put(path, json={"threshold": 40}).json()["threshold"] == 40
        assert client.get(path).json()["threshold"] == 40
        assert client.put(path, json={"threshold": 0}).json()["threshold"] == 0
        for bad in (101, -1, "50", 2.5):
            refused = client.put(path, json={"threshold": bad})
            assert refused.status_code == 400, bad
            assert refused.json()["error"].startswith("threshold: ")
        assert client.get(path).json()["threshold"] == 0


def long_reply(text: str, prompt_tokens: int) -> Reply:
    """An answer whose usage says the prompt had ``prompt_tokens`` tokens."""
    return openai_text_reply(text, prompt_tokens=prompt_tokens, completion_tokens=5)


def test_a_turn_at_the_threshold_compacts_first_and_one_past_the_window_is_refused(stack):
    conversation_id, long = "auto-1", "word " * 240  # about 300 tokens
    with stack.client() as client:
        for n in range(1, 4):
            stack.scripted.script(COMPLETIONS, long_reply(f"answer {n}", 310 * n))
            body = {"message": f"{n} {long}", "conversationId": conversation_id, "model": TINY}
            events = ndjson(client.post("/chat", json=body))
            assert not [e for e in events if e["type"].startswith("compaction")]
        # 930 measured + 5 + about 300 new tokens ≥ 85 % of 1,200: compacted before the call.
        stack.scripted.script(COMPLETIONS, openai_text_reply("the gist"), long_reply("ok", 400))
        body = {"message": f"4 {long}", "conversationId": conversation_id}
        events = ndjson(client.post("/chat", json=body))

        types = [e["type"] for e in events]
        assert types.index("compaction-start") < types.index("compaction-done")
        assert types.index("compaction-done") < types.index("text-delta")
        done = next(e for e in events if e["type"] == "compaction-done")
        # The tools' descriptions take most of the 1,200 tokens: only the prompt is kept.
        assert done["trigger"] == "auto" and done["keptMessages"] == 1
        assert done["replacedMessages"] == 6
        answer_request = stack.scripted.requests[-1].body["messages"]
        assert answer_request[0]["content"].startswith(SUMMARY_INTRO)
        assert [m["role"] for m in answer_request] == ["user", "user"]
        assert answer_request[1]["content"] == body["message"]
        turn = sealed_turns(client, conversation_id)[-1]
        assert [s.get("kind", "step") for s in turn["steps"]] == ["compaction", "step"]
        assert turn["contextSize"] == 405

        # Compaction off and a message past the window: refused before any model call.
        assert (
            client.put("/conversations/auto-2/compaction", json={"threshold": 0}).status_code == 200
        )
        calls = len(stack.scripted.requests)
        body = {"message": "word " * 1200, "conversationId": "auto-2", "model": TINY}
        events = ndjson(client.post("/chat", json=body))
        error = next(e for e in events if e["type"] == "error")
        assert error["code"] == "context-overflow"
        assert "1,200-token context window of tiny/tiny-model" in error["message"]
        assert events[-2]["reason"] == "error"
        assert len(stack.scripted.requests) == calls
        assert history(client, "auto-2")["chunks"][-1]["chunk"]["code"] == "context-overflow"


def test_continue_asks_the_model_to_go_on_in_a_new_turn(stack):
    cut = Reply(
        events=[
            openai_chunk({"role": "assistant", "content": "The first half"}),
            openai_chunk({}, "length"),
            openai_chunk(usage=openai_usage(10, 4)),
            OPENAI_DONE,
        ]
    )
    with stack.client() as client:
        stack.scripted.script(COMPLETIONS, cut, openai_text_reply(" and the rest."))
        first = ndjson(client.post("/chat", json={"message": "go", "conversationId": "cont-1"}))
        assert first[-2]["reason"] == "length"

        events = ndjson(client.post("/conversations/cont-1/continue"))

        assert events[0]["type"] == "user-message"
        assert events[0]["continuation"] is True and events[0]["text"] == CONTINUE_PROMPT
        assert events[-2]["reason"] == "stop"
        sent = stack.scripted.requests[-1].body["messages"]
        assert sent[-2:] == [
            {"role": "assistant", "content": "The first half"},
            {"role": "user", "content": CONTINUE_PROMPT},
        ]
        chunks = history(client, "cont-1")["chunks"]
        assert chunks[2]["chunk"] == {"type": "text", "text": CONTINUE_PROMPT, "continuation": True}
        nothing = client.post("/conversations/cont-nothing/continue")
        assert nothing.status_code == 404
        assert nothing.json() == {"error": "conversation not found: cont-nothing"}


def test_the_json_socket_compacts_and_streams_its_progress(stack):
    with stack.client() as client:
        turns(stack, client, "ws-compact", 6)
    stack.scripted.script(COMPLETIONS, openai_text_reply("SOCKET SUMMARY"))
    with connect(stack.ws_url(), open_timeout=10) as socket:
        assert json.loads(socket.recv(timeout=10))["type"] == "catalog"
        socket.send(json.dumps({"type": "chat.compact", "conversationId": "ws-compact"}))
        events = []
        while not events or events[-1]["type"] != "turn-sealed":
            frame = json.loads(socket.recv(timeout=20))
            if frame["type"] == "chat.delta":
                events.append(frame["event"])
        socket.send(json.dumps({"type": "chat.compact", "conversationId": "compact-short"}))
        refused = {"type": ""}
        while refused["type"] != "chat.error":  # after the status frames of the seal
            refused = json.loads(socket.recv(timeout=10))
    assert [e["type"] for e in events] == [
        "compaction-start",
        "compaction-done",
        "done",
        "turn-sealed",
    ]
    assert events[1]["summary"] == "SOCKET SUMMARY" and events[2]["reason"] == "compacted"
    assert refused["type"] == "chat.error" and "too short to compact" in refused["message"]


def test_models_report_the_windows_their_server_lists(stack):
    stack.scripted.script(
        "/v1/models",
        openai_models_reply("lm", "plain", windows={"lm": {"context_length": 4096}}),
    )
    with stack.client() as client:
        info = client.get("/models").json()["modelInfo"]
    assert info["listed/lm"]["contextWindow"] == 4096
    assert info["listed/plain"].get("contextWindow") is None
    assert info[TINY]["contextWindow"] == 1200


@pytest.fixture
def fresh_stack():
    yield from start_stack()


def test_a_restart_during_compaction_leaves_nothing_half_written(fresh_stack):
    stack, gate, conversation_id = fresh_stack, threading.Event(), "restart-1"
    with stack.client() as client:
        turns(stack, client, conversation_id, 6)
    calls = len(stack.scripted.requests)
    stack.scripted.script(
        COMPLETIONS,
        Reply(events=[openai_chunk({"role": "assistant", "content": "half a summ"}), gate]),
    )
    worker = stack.workers[0]

    def compact() -> None:
        with stack.client() as client, pytest.raises(httpx.HTTPError):
            client.post(f"/conversations/{conversation_id}/compact", timeout=60)

    thread = threading.Thread(target=compact)
    thread.start()
    wait_for(lambda: len(stack.scripted.requests) > calls, "the summary request")
    worker.kill()  # mid-summary: the server dies
    gate.set()
    thread.join(30)
    worker.start()  # start-up recovery seals the compaction turn

    with stack.client() as client:
        chunks = history(client, conversation_id)["chunks"]
        assert [c["seq"] for c in chunks] == list(range(1, 13))
        assert not [c for c in chunks if c["chunk"]["type"] == "compaction"]
        last = sealed_turns(client, conversation_id)[-1]
        assert (last["kind"], last["finishReason"]) == ("compaction", "interrupted")
        # It can be compacted again, and the log goes on gap-free.
        stack.scripted.script(COMPLETIONS, openai_text_reply("WHOLE SUMMARY"))
        again = client.post(f"/conversations/{conversation_id}/compact")
        assert again.status_code == 200, again.text
        assert again.json()["seq"] == 13

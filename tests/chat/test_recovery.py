"""Recovery: SIGKILL a real server in the middle of a multi-step turn, restart it (docs/protocol.md#4-the-turn)."""

from __future__ import annotations

import json
import threading

import pytest

from tests.chat.live import COMPLETIONS, start_stack
from tests.chat.providers.sse_server import openai_text_reply, openai_tool_reply
from tests.chat.test_api_chat import gated_reply, history, sealed_turns


@pytest.fixture
def fresh_stack():
    yield from start_stack()


def test_sigkill_mid_turn_then_restart_seals_the_turn_interrupted(fresh_stack):
    stack, gate, conversation_id = fresh_stack, threading.Event(), "killed-1"
    stack.scripted.script(
        COMPLETIONS,
        openai_tool_reply([("call_1", "list_files", {})]),
        gated_reply(gate, before="Partial"),
    )
    worker = stack.workers[0]
    with (
        stack.client() as client,
        client.stream(
            "POST", "/chat", json={"message": "look", "conversationId": conversation_id}
        ) as response,
    ):
        for line in response.iter_lines():
            # Step 1 is streaming, so step 0 (call + result) was committed before it began.
            if json.loads(line)["type"] == "text-delta":
                worker.kill()
                break
    gate.set()
    worker.start()  # the same database: start-up recovery runs before it serves

    with stack.client() as client:
        chunks = history(client, conversation_id)["chunks"]
        assert [(c["seq"], c["chunk"]["type"]) for c in chunks] == [
            (1, "text"),
            (2, "tool-call"),
            (3, "tool-result"),
        ]
        turns = sealed_turns(client, conversation_id)
        assert [t["finishReason"] for t in turns] == ["interrupted"]
        assert client.get("/conversations").json()["conversations"][0]["status"] == "idle"

        # The log goes on gap-free with the next turn.
        stack.scripted.script(COMPLETIONS, openai_text_reply("after the crash"))
        again = client.post("/chat", json={"message": "again", "conversationId": conversation_id})
        assert again.status_code == 200
        assert [c["seq"] for c in history(client, conversation_id)["chunks"]] == [1, 2, 3, 4, 5]
        # The provider saw the recovered history, reconciled: the call with its result.
        messages = stack.scripted.requests[-1].body["messages"]
        assert [m["role"] for m in messages] == ["user", "assistant", "tool", "user"]

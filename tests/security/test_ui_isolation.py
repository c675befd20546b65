"""The web app's socket never shows another user's conversation, even one created after it
connected with that id (a draft page's id can be taken by someone else's client)."""

from __future__ import annotations

import json

import pytest
from websockets.sync.client import connect

from tests.chat.live import COMPLETIONS, ndjson, start_stack
from tests.chat.providers.sse_server import openai_text_reply

TIMEOUT = 20


@pytest.fixture(scope="module")
def stack():
    yield from start_stack()


def test_a_draft_page_never_receives_another_users_turn_on_that_id(stack):
    conversation_id = "taken-later"
    url = stack.ws_url("bob", path="/ws/ui") + f"&conversation={conversation_id}"
    with connect(url, open_timeout=TIMEOUT) as bob_page:
        initial = bob_page.recv(timeout=TIMEOUT)  # the (empty) history of the draft
        stack.scripted.script(COMPLETIONS, openai_text_reply("alice private words"))
        with stack.client("alice") as alice:
            events = ndjson(
                alice.post("/chat", json={"message": "secret", "conversationId": conversation_id})
            )
        assert events[-1]["type"] == "turn-sealed"
        # A frame that gets an answer: everything queued for Bob's socket before it is out.
        bob_page.send(json.dumps({"action": "no-such-action"}))
        received = [initial]
        while "unknown action" not in received[-1]:
            received.append(bob_page.recv(timeout=TIMEOUT))
    page = "".join(received)
    assert "alice private words" not in page
    assert "secret" not in page

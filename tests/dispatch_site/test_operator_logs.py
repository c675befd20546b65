"""What a real Daphne worker writes to its log: no ``?token=`` value in the access log, and
provider failures, retries and recoveries at WARNING/ERROR with the conversation and turn ids
but never the conversation's text."""

from __future__ import annotations

import uuid

import httpx
import pytest
from websockets.sync.client import connect

from chat.overrides.access_log import redact
from tests.chat.live import COMPLETIONS, ndjson, start_stack, wait_for
from tests.chat.providers.sse_server import Reply, openai_text_reply


@pytest.fixture(scope="module")
def stack():
    yield from start_stack()


def test_the_access_log_never_holds_a_token_query_value(stack):
    token = stack.token
    worker = stack.workers[0]
    marker = uuid.uuid4().hex
    httpx.get(f"{stack.url}/models?token={token}&marker={marker}", timeout=10)
    with connect(f"{stack.url.replace('http', 'ws')}/ws?token={token}&marker={marker}") as ws:
        ws.recv(timeout=10)  # the catalog: the socket is connected
    http_line = f"GET /models?token=[redacted]&marker={marker}"

    def logged() -> bool:
        log = worker.output()
        return http_line in log and "WSCONNECT /ws" in log.split(http_line, 1)[1]

    wait_for(logged, "the HTTP and WebSocket access log lines")
    assert token not in worker.output()


def test_provider_failures_are_logged_with_ids_and_without_text(stack):
    worker = stack.workers[0]
    secret = f"private words {uuid.uuid4().hex}"
    failing = Reply(status=500, body={"error": {"message": "upstream exploded"}})
    stack.scripted.script(COMPLETIONS, failing, openai_text_reply("fine"))
    conversation = f"log-{uuid.uuid4().hex[:8]}"
    with stack.client() as client:
        response = client.post("/chat", json={"conversationId": conversation, "message": secret})
    turn = ndjson(response)[0]["turnId"]
    ids = f"conversation {conversation} turn {turn} step 0"
    wait_for(lambda: f"{ids}: the provider recovered" in worker.output(), "the recovery line")
    log = worker.output()
    assert f"WARNING chat.runtime.turn: {ids}: provider failed (" in log
    assert "retry 1 in 0.05s" in log
    assert secret not in log
    assert "test-key" not in log  # the credential's API key


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/ws?token=abc", "/ws?token=[redacted]"),
        ("/x?a=1&TOKEN=abc&b=2", "/x?a=1&TOKEN=[redacted]&b=2"),
        ("/x?mytoken=abc", "/x?mytoken=abc"),
        ("/login/once/abc/", "/login/once/abc/"),
    ],
)
def test_redact(path, expected):
    assert redact(path) == expected

"""Prometheus metrics at /-/metrics of a real Daphne worker: scraped during and after turns."""

from __future__ import annotations

import json
import threading
import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from tests.chat.live import COMPLETIONS, MODEL, start_stack, wait_for
from tests.chat.providers.sse_server import (
    Reply,
    openai_text_reply,
    openai_tool_reply,
)
from tests.chat.test_api_chat import gated_reply

TOKEN = "scrape-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def stack():
    yield from start_stack({"DISPATCH_PROMETHEUS_TOKEN": TOKEN})


class Samples:
    """One scrape: every sample by name and labels."""

    def __init__(self, text: str) -> None:
        self.values: dict[tuple[str, frozenset], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                self.values[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def __call__(self, name: str, **labels: str) -> float:
        """The sample's value; 0 for a series that does not exist yet."""
        return self.values.get((name, frozenset(labels.items())), 0.0)


def scrape(stack) -> Samples:
    response = httpx.get(
        f"{stack.url}/-/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return Samples(response.text)


def delta(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return after(name, **labels) - before(name, **labels)


def test_a_scrape_during_a_turn_sees_it_running_and_after_it_sees_it_ended(stack):
    gate = threading.Event()
    stack.scripted.script(
        COMPLETIONS,
        openai_tool_reply([("c1", "list_files", {})]),
        gated_reply(gate, before="Hello", after=" world"),
    )
    conversation_id = "p-" + uuid.uuid4().hex[:12]
    before = scrape(stack)

    with stack.client() as client:
        with client.stream(
            "POST", "/chat", json={"conversationId": conversation_id, "message": "look"}
        ) as response:
            assert response.status_code == 200
            lines = response.iter_lines()
            for line in lines:
                if line and json.loads(line)["type"] == "text-delta":
                    break  # the second step streams, and waits on the gate
            during = scrape(stack)
            gate.set()
            types = [json.loads(line)["type"] for line in lines if line]
        assert types[-1] == "turn-sealed"
        turn = client.get(f"/conversations/{conversation_id}/metrics").json()["turns"][-1]
    after = scrape(stack)

    # During: running, started, its first step (the tool step) and its tool call counted.
    assert during("dispatch_turns_running") == 1
    assert delta(before, during, "dispatch_turns_started_total", model=MODEL) == 1
    assert delta(before, during, "dispatch_turns_ended_total", model=MODEL, reason="stop") == 0
    assert delta(before, during, "dispatch_step_duration_seconds_count", model=MODEL) == 1
    assert delta(before, during, "dispatch_tool_calls_total", tool="list_files", outcome="ok") == 1
    assert delta(before, during, "dispatch_tool_duration_seconds_count", tool="list_files") == 1

    # After: ended by its finish reason, both steps timed, tokens as the sealed metrics say.
    assert after("dispatch_turns_running") == 0
    assert delta(before, after, "dispatch_turns_ended_total", model=MODEL, reason="stop") == 1
    assert delta(before, after, "dispatch_step_duration_seconds_count", model=MODEL) == 2
    assert delta(before, after, "dispatch_ttft_seconds_count", model=MODEL) == 1  # text step
    assert delta(before, after, "dispatch_decode_seconds_count", model=MODEL) == 1
    ttft = delta(before, after, "dispatch_ttft_seconds_sum", model=MODEL)
    assert ttft == pytest.approx(turn["steps"][1]["ttftMs"] / 1000)
    usage = turn["usage"]
    assert usage["inputTokens"] > 0 and usage["outputTokens"] > 0
    assert (
        delta(before, after, "dispatch_tokens_total", model=MODEL, type="input")
        == (usage["inputTokens"])
    )
    assert (
        delta(before, after, "dispatch_tokens_total", model=MODEL, type="output")
        == (usage["outputTokens"])
    )


def test_retries_and_provider_errors_are_counted_by_code(stack):
    stack.scripted.script(
        COMPLETIONS,
        Reply(status=500, body={"error": {"message": "storm"}}),
        openai_text_reply("after the storm"),
        Reply(status=400, body={"error": {"message": "bad request"}}),
    )
    before = scrape(stack)

    with stack.client() as client:
        for _ in range(2):
            response = client.post("/chat", json={"message": "hi"})
            assert response.status_code == 200
    after = scrape(stack)

    assert (
        delta(before, after, "dispatch_provider_retries_total", model=MODEL, code="http-500") == 1
    )
    assert delta(before, after, "dispatch_provider_errors_total", model=MODEL, code="http-400") == 1
    assert delta(before, after, "dispatch_provider_errors_total", model=MODEL, code="http-500") == 0
    assert delta(before, after, "dispatch_turns_ended_total", model=MODEL, reason="stop") == 1
    assert delta(before, after, "dispatch_turns_ended_total", model=MODEL, reason="error") == 1


def test_a_tool_the_model_made_up_counts_as_unknown(stack):
    stack.scripted.script(
        COMPLETIONS,
        openai_tool_reply([("c1", "no_such_tool_" + uuid.uuid4().hex[:6], {})]),
        openai_text_reply("sorry"),
    )
    before = scrape(stack)
    with stack.client() as client:
        assert client.post("/chat", json={"message": "hi"}).status_code == 200
    after = scrape(stack)

    assert delta(before, after, "dispatch_tool_calls_total", tool="(unknown)", outcome="error") == 1
    assert not any("no_such_tool" in str(key) for key in after.values)


def test_open_websockets_are_counted_by_kind(stack):
    base = scrape(stack)("dispatch_websockets_open", kind="api")
    with connect(stack.ws_url(), open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "catalog"
        wait_for(
            lambda: scrape(stack)("dispatch_websockets_open", kind="api") == base + 1,
            "the socket to be counted",
        )
    wait_for(
        lambda: scrape(stack)("dispatch_websockets_open", kind="api") == base,
        "the closed socket to be uncounted",
    )
    assert scrape(stack)("dispatch_websockets_open", kind="webapp") == 0


def test_a_scrape_without_the_token_is_refused(stack):
    url = f"{stack.url}/-/metrics"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        response = httpx.get(url, headers=headers, timeout=10)
        assert response.status_code == 401
        assert "DISPATCH_PROMETHEUS_TOKEN" in response.json()["error"]
        assert "dispatch_turns" not in response.text
    post = httpx.post(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    assert post.status_code == 405
    assert post.json() == {"error": "method not allowed: use GET"}

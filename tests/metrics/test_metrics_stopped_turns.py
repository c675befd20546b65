"""Honest metrics end to end: a turn stopped mid-stream counts the tokens it streamed
(estimated, shown with "~") over its generation time, so a model's throughput stays what
its uninterrupted turns measure (issue #18)."""

from __future__ import annotations

import json
import threading
import uuid

import pytest

from tests.chat.live import COMPLETIONS, MODEL, ndjson, start_stack, wait_for
from tests.chat.providers.sse_server import (
    OPENAI_DONE,
    Pause,
    Reply,
    openai_chunk,
    openai_usage,
)

PACE = 0.015  # seconds between tokens: a model at ~65 tok/s


def paced_reply(tokens: int, *, gate: threading.Event | None = None) -> Reply:
    """``tokens`` one-token pieces at a steady pace; with a ``gate`` the stream then holds
    (the model is cut off there) instead of finishing with its usage."""
    events: list = [openai_chunk({"role": "assistant", "content": ""})]
    for n in range(tokens):
        events += [Pause(PACE), openai_chunk({"content": f"w{n} "})]
    if gate is not None:
        return Reply(events=[*events, gate])
    return Reply(
        events=[
            *events,
            openai_chunk({}, "stop"),
            openai_chunk(usage=openai_usage(30, tokens)),
            OPENAI_DONE,
        ]
    )


@pytest.fixture(scope="module")
def stack():
    yield from start_stack()


def model_row(client) -> dict:
    models = client.get("/metrics/throughput", params={"period": "day"}).json()["models"]
    return next((m for m in models if m["model"] == MODEL), {"totalOutputTokens": 0})


def test_a_stopped_turn_counts_its_streamed_tokens_at_the_models_rate(stack):
    with stack.client() as client:
        for _ in range(2):
            stack.scripted.script(COMPLETIONS, paced_reply(60))
            assert ndjson(client.post("/chat", json={"message": "count"}))[-1]["type"] == (
                "turn-sealed"
            )
        before = model_row(client)

        gate = threading.Event()
        stack.scripted.script(COMPLETIONS, paced_reply(45, gate=gate))
        conversation = f"stop-{uuid.uuid4().hex[:8]}"
        events: list[dict] = []

        def stream() -> None:
            body = {"conversationId": conversation, "message": "go"}
            with stack.client() as streamer, streamer.stream("POST", "/chat", json=body) as reply:
                for line in reply.iter_lines():
                    if line.strip():
                        events.append(json.loads(line))

        streaming = threading.Thread(target=stream)
        streaming.start()

        def streamed() -> str:
            return "".join(e.get("delta", "") for e in list(events) if e["type"] == "text-delta")

        wait_for(lambda: "w44 " in streamed(), "all 45 tokens streamed")
        client.post(f"/conversations/{conversation}/stop")
        streaming.join(30)
        gate.set()
        done = next(e for e in events if e["type"] == "done")
        assert done["reason"] == "aborted"
        assert done["usage"] == {"inputTokens": 0, "outputTokens": 45, "estimated": True}
        (turn,) = client.get(f"/conversations/{conversation}/metrics").json()["turns"]
        assert turn["usage"]["estimated"] is True and turn["usage"]["outputTokens"] == 45

        after = model_row(client)
    assert after["totalOutputTokens"] - before["totalOutputTokens"] == 45
    assert after["turns"] == before["turns"] + 1
    assert after["tokensPerSecond"] == pytest.approx(before["tokensPerSecond"], rel=0.10)

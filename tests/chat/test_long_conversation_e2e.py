"""A long conversation on the real embedded model (SmolLM2-135M) with a small window: twelve
turns that together are more than three windows long. The context budget and automatic
compaction keep every turn going (docs/protocol.md#24-compaction, #410-the-context-budget)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import httpx
import llama_cpp
import pytest

from chat.providers.local import default_model_path
from tests.chat.live import create_user, ndjson
from tests.servers import DaphneWorker, manage

WINDOW = 2048
TURNS = 12
TOPICS = [
    "lighthouses on the Atlantic coast",
    "growing tomatoes on a balcony",
    "the history of the bicycle",
    "how bees make honey",
    "packing for a week of hiking",
    "the rules of chess",
    "baking sourdough bread",
    "the planets of the solar system",
    "learning to play the guitar",
    "repairing a leaking tap",
    "the life of octopuses",
    "planning a small wedding",
]


def prompt(turn: int) -> str:
    """About 350 tokens of notes on a topic, then a question about them."""
    topic = TOPICS[turn % len(TOPICS)]
    notes = " ".join(
        f"Note {n} on {topic}: this detail matters because it changes how one goes about "
        f"{topic}, and people often forget it."
        for n in range(1, 13)
    )
    return f"Here are my notes, part {turn + 1}. {notes} Please summarize these notes briefly."


# Twelve generations on 2 shared cores: about 3 minutes alone, 7 under load.
@pytest.mark.timeout(1200)
def test_twelve_turns_over_three_windows_stay_within_the_window():
    var_dir = Path(tempfile.mkdtemp(prefix="dispatch-long-"))
    config = var_dir / "dispatch.toml"
    config.write_text(
        "[[credentials]]\n"
        'name = "local"\n'
        'kind = "local"\n'
        f"context_window = {WINDOW}\n"
        "max_tokens = 200\n"
    )
    env = {
        "DISPATCH_VAR_DIR": str(var_dir),
        "DISPATCH_CONFIG": str(config),
        "DISPATCH_TURN_RATE_LIMIT": "0",
    }
    manage(["migrate", "--noinput"], **env)
    _, token = create_user(env, "alice")
    conversation_id = "long-e2e"
    prompts = [prompt(turn) for turn in range(TURNS)]
    all_events: list[list[dict]] = []
    with (
        DaphneWorker(env) as worker,
        httpx.Client(
            base_url=worker.url, headers={"Authorization": f"Bearer {token}"}, timeout=900
        ) as client,
    ):
        assert client.get("/models").json()["modelInfo"]["local/smollm2-135m-instruct"] == {
            "vision": False,
            "contextWindow": WINDOW,
        }
        for text in prompts:
            response = client.post(
                "/chat", json={"message": text, "conversationId": conversation_id}
            )
            assert response.status_code == 200, response.text
            all_events.append(ndjson(response))
        chunks = client.get(f"/conversations/{conversation_id}").json()["chunks"]
        turns = client.get(f"/conversations/{conversation_id}/metrics").json()["turns"]

    # Every turn ends with an answer, stopped or cut at the length limit, never an error.
    for events in all_events:
        assert events[-1]["type"] == "turn-sealed"
        done = events[-2]
        assert done["reason"] in {"stop", "length"}, [e for e in events if e["type"] == "error"]
    assert [t["finishReason"] for t in turns] == [e[-2]["reason"] for e in all_events]

    # Together the turns are more than three windows long (exact tokens of the model).
    vocab = llama_cpp.Llama(model_path=default_model_path(), vocab_only=True, verbose=False)
    prompt_tokens = sum(len(vocab.tokenize(p.encode(), add_bos=False)) for p in prompts)
    answer_tokens = sum(
        s["usage"]["outputTokens"] for t in turns for s in t["steps"] if "kind" not in s
    )
    assert prompt_tokens + answer_tokens >= 3 * WINDOW, (prompt_tokens, answer_tokens)

    # The provider never got more than the window: no request, no request plus its answer.
    for turn in turns:
        for step in turn["steps"]:
            usage = step["usage"]
            assert (
                usage["inputTokens"] > 0 and usage["inputTokens"] + usage["outputTokens"] <= WINDOW
            )

    # At least one automatic compaction, in the history and in the metrics.
    compactions = [c for c in chunks if c["chunk"]["type"] == "compaction"]
    assert compactions and all(c["chunk"]["trigger"] == "auto" for c in compactions)
    assert all(c["chunk"]["summary"].strip() for c in compactions)
    compaction_steps = [s for t in turns for s in t["steps"] if s.get("kind") == "compaction"]
    assert len(compaction_steps) == len(compactions)
    assert all(s["usage"]["outputTokens"] > 0 for s in compaction_steps)

    # The log is gap-free and complete: every prompt, every answer, every summary, in order.
    assert [c["seq"] for c in chunks] == list(range(1, len(chunks) + 1))
    user_texts = [c["chunk"]["text"] for c in chunks if c["role"] == "user"]
    assert user_texts == prompts
    answers = [
        "".join(e["delta"] for e in events if e["type"] == "text-delta") for events in all_events
    ]
    stored_answers = [c["chunk"]["text"] for c in chunks if c["role"] == "assistant"]
    assert stored_answers == [a for a in answers if a]

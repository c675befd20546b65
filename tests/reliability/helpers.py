"""Shared parts of the reliability suite: a live stack with a configurable model, and the
check that a conversation's persisted log equals what a client saw live.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

from bench.standin import Schedule, StandinProcess
from tests.chat.live import Stack, create_user, write_config
from tests.chat.providers.sse_server import ScriptedServer
from tests.servers import DaphneWorker, manage


def reliability_stack(
    *,
    env: dict[str, str] | None = None,
    config_extra: str = "",
    model_url: str | None = None,
    workers: int = 1,
) -> Iterator[Stack]:
    """Like ``tests.chat.live.start_stack``, plus ``config_extra`` TOML after the ``scripted``
    credential (``MODEL_URL`` in it becomes the model server's URL) and another model server
    (``model_url``) in place of the scripted one."""
    scripted = ScriptedServer().start()
    var_dir = Path(tempfile.mkdtemp(prefix="dispatch-reliability-"))
    model_url = model_url or scripted.url
    config = write_config(var_dir, model_url, config_extra.replace("MODEL_URL", model_url))
    stack_env = {
        "DISPATCH_VAR_DIR": str(var_dir),
        "DISPATCH_CONFIG": str(config),
        "SCRIPTED_API_KEY": "test-key",
        "DISPATCH_TURN_RATE_LIMIT": "0",  # these tests start many turns
        **(env or {}),
    }
    manage(["migrate", "--noinput"], **stack_env)
    stack = Stack(scripted, stack_env, [])
    stack.tokens = {name: create_user(stack_env, name) for name in ("alice", "bob")}
    try:
        for _ in range(workers):
            stack.workers.append(DaphneWorker(stack_env).start())
        yield stack
    finally:
        scripted.close()
        for worker in stack.workers:
            worker.stop()


def standin_process() -> Iterator[str]:
    """Run the benchmark's model stand-in (``bench.standin``) fast; yields its base URL.

    Four tokens per answer, no time to first token, at a rate no test waits for; a prompt
    with ``bench.standin.TOOL_MARKER`` gets a ``list_files`` step first.
    """
    with StandinProcess(Schedule(rate=100_000, tokens=4, ttft=0)) as standin:
        yield f"http://127.0.0.1:{standin.port}"


def chunks_from_events(events: list[dict]) -> list[tuple[str, dict]]:
    """The (role, chunk) log a turn's live events imply (SPEC §3: what must be persisted).

    The user message, then per step the assistant message (text deltas merged into one text
    chunk, tool calls and an error in stream order) followed by its tool results.
    """
    out: list[tuple[str, dict]] = []
    assistant: list[dict] = []
    results: list[dict] = []
    step_over = False

    def flush() -> None:
        nonlocal step_over
        out.extend(("assistant", chunk) for chunk in assistant)
        out.extend(("tool", chunk) for chunk in results)
        assistant.clear()
        results.clear()
        step_over = False

    for event in events:
        kind = event["type"]
        if kind in ("text-delta", "reasoning-delta", "tool-call") and step_over:
            flush()
        if kind in ("user-message", "steering"):
            out.append(("user", {"type": "text", "text": event["text"]}))
        elif kind in ("text-delta", "reasoning-delta"):
            chunk_type = "text" if kind == "text-delta" else "thinking"
            current = next((c for c in assistant if c["type"] == chunk_type), None)
            if current is None:
                assistant.append({"type": chunk_type, "text": event["delta"]})
            else:
                current["text"] += event["delta"]
        elif kind == "tool-call":
            assistant.append({"type": "tool-call", **_fields(event, "durationMs")})
        elif kind == "step-complete":
            step_over = True
        elif kind == "tool-result":
            results.append({"type": "tool-result", **_fields(event, "durationMs")})
        elif kind == "error":
            error = {"type": "error", "message": event["message"]}
            if "code" in event:
                error["code"] = event["code"]
            assistant.append(error)
        elif kind == "done":
            flush()
    return out


def _fields(event: dict, *drop: str) -> dict:
    skip = {"type", "conversationId", "turnId", *drop}
    return {key: value for key, value in event.items() if key not in skip}


def log_of(chunks: list[dict]) -> list[tuple[str, dict]]:
    """Persisted StoredChunks as (role, chunk), asserting seqs are 1-based and gap-free from
    the first one."""
    first = chunks[0]["seq"] if chunks else 1
    assert [c["seq"] for c in chunks] == list(range(first, first + len(chunks)))
    return [(c["role"], c["chunk"]) for c in chunks]

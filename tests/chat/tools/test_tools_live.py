"""The tools inside a real Daphne worker (issue #21): run_shell cannot read the server's secrets
or files, and a catastrophic search pattern is answered while the server keeps serving."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.chat.live import COMPLETIONS, MODEL, Stack, start_stack
from tests.chat.providers.sse_server import openai_text_reply, openai_tool_reply

SECRET = f"live-secret-{uuid.uuid4().hex}"
# The probe of the issue, and the server's other neighbours: its database and config.
LEAK = (
    "tr '\\0' '\\n' </proc/$PPID/environ; tr '\\0' '\\n' </proc/1/environ; "
    "for f in /proc/[0-9]*/environ; do tr '\\0' '\\n' <$f; done; env; ls -a .. ../..; "
    "cat ../* ../../*; echo probed"
)


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    yield from start_stack({"SECRET_KEY": SECRET}, config_extra="[tools]\nrun_shell = true\n")


def _turn(stack: Stack, calls: list[tuple[str, str, dict]]) -> tuple[list[dict], list[int]]:
    """One turn whose model calls ``calls`` then answers; its events, and the status codes of
    ``GET /health`` asked while the turn's tools ran."""
    stack.scripted.script(COMPLETIONS, openai_tool_reply(calls), openai_text_reply("done"))
    events: list[dict] = []
    health: list[int] = []
    body = {"conversationId": f"tools-{uuid.uuid4().hex[:8]}", "message": "go", "model": MODEL}
    with stack.client() as client, client.stream("POST", "/chat", json=body) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.strip():
                events.append(json.loads(line))
                if events[-1]["type"] == "step-complete" and len(health) == 0:
                    health.append(httpx.get(f"{stack.url}/health", timeout=30).status_code)
    assert events[-1]["type"] == "turn-sealed"
    return events, health


def _results(events: list[dict]) -> dict[str, dict]:
    return {e["toolName"]: e for e in events if e["type"] == "tool-result"}


def test_run_shell_sees_none_of_the_server_s_secrets_or_files(stack: Stack) -> None:
    worker = stack.workers[0]
    with open(f"/proc/{worker.pid}/environ", "rb") as file:
        assert SECRET.encode() in file.read()  # the secret is there to be stolen …
    events, _ = _turn(stack, [("call_1", "run_shell", {"command": LEAK})])
    result = _results(events)["run_shell"]
    assert SECRET not in result["content"]  # … but not from inside the sandbox
    assert "PATH=" in result["content"] and "probed" in result["content"]
    assert "test-key" not in result["content"]  # the model credential's API key
    assert "DISPATCH_CONFIG" not in result["content"]
    assert "dispatch.sqlite3" not in result["content"]  # the workspace's neighbours are hidden
    assert "SQLite format" not in result["content"]


def test_a_catastrophic_search_is_answered_and_health_stays_up(stack: Stack) -> None:
    workspace = Path(stack.env["DISPATCH_VAR_DIR"], "workspace")
    workspace.mkdir(exist_ok=True)
    (workspace / "crafted.txt").write_text(("a" * 64 + "!\n") * 100)
    pattern = "(a+)+$"  # with Python's re: 2**64 steps per line
    events, health = _turn(stack, [("call_1", "search_files", {"pattern": pattern})])
    result = _results(events)["search_files"]
    assert result["content"] == f"no matches for {pattern!r}" and not result["isError"]
    assert health == [200]
    assert httpx.get(f"{stack.url}/health", timeout=30).status_code == 200


def test_two_users_agents_cannot_reach_each_others_files(stack: Stack) -> None:
    """Issue #21.1: Bob's secret, in Bob's workspace, is out of reach of Alice's agent by a
    relative path, an absolute path, a symlink Alice made, a glob, a search, a write, an edit,
    the shell, and a cwd naming Bob's workspace."""
    bob, alice = stack.workspace("bob"), stack.workspace("alice")
    secret = f"bob-private-{uuid.uuid4().hex}"
    (bob / "notes").mkdir(parents=True, exist_ok=True)
    (bob / "notes" / "secret.txt").write_text(secret)
    alice.mkdir(parents=True, exist_ok=True)
    link = alice / f"to-bob-{uuid.uuid4().hex[:6]}"
    link.symlink_to(bob)
    relative = f"../{stack.user_ids['bob']}/notes/secret.txt"
    calls = [
        ("c1", "read_file", {"path": relative}),
        ("c2", "read_file", {"path": str(bob / "notes" / "secret.txt")}),
        ("c3", "read_file", {"path": f"{link.name}/notes/secret.txt"}),
        ("c4", "list_files", {"path": f"../{stack.user_ids['bob']}"}),
        ("c5", "list_files", {"path": ".", "glob": "../**"}),
        ("c6", "search_files", {"pattern": "bob-private", "path": str(bob)}),
        ("c7", "search_files", {"pattern": "bob-private", "path": link.name}),
        ("c8", "write_file", {"path": relative, "content": "alice was here", "overwrite": True}),
        ("c9", "write_file", {"path": f"{link.name}/notes/new.txt", "content": "x"}),
        ("c10", "edit_file", {"path": relative, "oldString": "bob", "newString": "alice"}),
        ("c11", "run_shell", {"command": f"cat {relative} {bob}/notes/secret.txt; ls .."}),
    ]
    events, _ = _turn(stack, calls)
    results = {e["toolCallId"]: e for e in events if e["type"] == "tool-result"}
    assert set(results) == {call[0] for call in calls}
    for call_id, result in results.items():
        assert secret not in result["content"], call_id
        if call_id != "c11":  # the shell runs, sees nothing; every file tool refuses
            assert result["isError"], (call_id, result["content"])
    assert str(stack.user_ids["bob"]) not in results["c11"]["content"].split()
    assert (bob / "notes" / "secret.txt").read_text() == secret
    assert sorted(p.name for p in (bob / "notes").iterdir()) == ["secret.txt"]

    # A cwd naming Bob's workspace is refused before any turn starts.
    with stack.client() as client:
        for cwd in (str(bob), f"../{stack.user_ids['bob']}", link.name):
            body = {"conversationId": f"cwd-{uuid.uuid4().hex[:8]}", "message": "x", "cwd": cwd}
            response = client.post("/chat", json=body)
            assert response.status_code == 400, cwd
            assert response.json() == {"error": "cwd: must be a directory inside your workspace"}

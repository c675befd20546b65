"""The turn's plain statements (chat.rawsql) write what the ORM would, on SQLite and on
PostgreSQL: a turn begun, its user message and a step appended, sealed with its metrics and
its queue drained, each read back through the ORM in a process of its own."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from tests.servers import REPO_ROOT, manage, subprocess_env


def run_turn(**env: str) -> tuple[str, dict]:
    cid = f"raw-{uuid.uuid4().hex[:8]}"
    done = subprocess.run(
        [sys.executable, "-m", "tests.chat.rawsql_turn", cid],
        cwd=REPO_ROOT, env=subprocess_env(**env), capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return cid, json.loads(done.stdout.strip().splitlines()[-1])


def expected(cid: str, owner: int) -> dict:
    turn = f"{cid}-t"
    step = f"{turn}#0"
    text = {"type": "text", "text": "nul\ufffdhere", "stepId": step}
    call = {"type": "tool-call", "id": "c1", "name": "read", "input": {"path": "a"}, "stepId": step}
    user = {"type": "text", "text": "hi\u00e9 \u2603"}
    return {
        "owner": owner,
        "fetched": [cid, "Raw", True, True, True, None, None],
        "stored": [
            {"seq": 2, "role": "assistant", "chunk": text},
            {"seq": 3, "role": "assistant", "chunk": call},
        ],
        "sealed": [cid, "idle"],
        "again": [cid, "idle"],
        "drained": ["later"],
        "conversation": {
            "lastSeq": 3, "lastOrdinal": 2, "lastTurnNumber": 1, "status": "idle", "model": "m/x",
        },
        "chunks": [
            [1, 1, "user", "text", user, turn, "", True],
            [2, 2, "assistant", "text", text, turn, step, True],
            [3, 2, "assistant", "tool-call", call, turn, step, True],
        ],
        "search": [
            [0, "title", "Raw", True],
            [1, "user", "hi\u00e9 \u2603", True],
            [2, "assistant", "nul\ufffdhere", True],
        ],
        "turn": ["sealed", "turn", 1, "m/x", "w", "stop", True, True, True],
        "turnMetrics": [cid, "m/x", "stop", 12, 7, False, 3, None, 812.5, 19, 340.0, 300.0,
                        False, True],
        "stepMetrics": [step, 0, "step", 12, 7, 40.0, 300.0, 340.0],
        "taken": [None, "Raw"],
        "second": [
            [3, 2, owner],
            [{"seq": 4, "role": "user", "chunk": {"type": "text", "text": "again"}}],
            4, 2,
        ],
    }  # fmt: skip


def test_sqlite_reads_back_what_the_plain_statements_wrote(tmp_path):
    env = {"DISPATCH_VAR_DIR": str(tmp_path)}
    manage(["migrate", "--noinput"], **env)
    cid, out = run_turn(**env)
    assert out == expected(cid, out["owner"])


@pytest.mark.usefixtures("postgres_server")
def test_postgres_reads_back_what_the_plain_statements_wrote(migrated_postgres_url, tmp_path):
    cid, out = run_turn(DATABASE_URL=migrated_postgres_url, DISPATCH_VAR_DIR=str(tmp_path))
    assert out == expected(cid, out["owner"])

"""The append-only log under contention: seqs 1..N, no gap, no duplicate, messages regroup.

Writers are separate OS processes (and threads inside them) running
``tests/chat/log_writer.py`` against a file SQLite database or the suite's PostgreSQL.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from contextlib import closing
from itertools import groupby

import psycopg
import pytest
from django.db import IntegrityError, transaction

from chat.errors import NotFound
from chat.models import Chunk, SearchEntry
from chat.runtime import Message
from chat.services._log import chunks_append, conversation_create, conversation_ensure
from tests.servers import REPO_ROOT, manage, subprocess_env

WRITER = [sys.executable, "-m", "tests.chat.log_writer"]
LOG_ROWS = (
    "SELECT seq, message, role, payload FROM chat_chunk WHERE conversation_id = {0} ORDER BY seq"
)
COUNTERS = "SELECT last_seq, last_message_ordinal FROM chat_conversation WHERE id = {0}"


def _write_concurrently(env: dict, conversation_id: str, processes: int, threads: int, calls: int):
    """Start every writer, release them together once all are connected; their reports."""
    workers = [
        subprocess.Popen(
            [*WRITER, conversation_id, f"p{n}", str(threads), str(calls)],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(processes)
    ]
    try:
        for worker in workers:
            assert worker.stdout.readline() == "ready\n", worker.communicate()[1]
        for worker in workers:
            worker.stdin.write("go\n")
            worker.stdin.flush()
        reports: dict[str, list[dict]] = {}
        for worker in workers:
            out, err = worker.communicate(timeout=120)
            assert worker.returncode == 0, err
            reports.update(json.loads(out))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    assert len(reports) == processes * threads
    return reports


def _assert_log_consistent(log: dict, reports: dict[str, list[dict]]) -> None:
    rows = log["rows"]
    written = sum(
        len(m["chunks"]) for calls in reports.values() for c in calls for m in c["messages"]
    )

    # Seqs are exactly 1..N: no gap, no duplicate, nothing lost.
    assert [r["seq"] for r in rows] == list(range(1, written + 1))
    assert log["lastSeq"] == written
    by_seq = {r["seq"]: r for r in rows}

    for writer, calls in reports.items():
        previous_seq = 0
        for call in calls:
            flat = [(m["role"], chunk) for m in call["messages"] for chunk in m["chunks"]]
            seqs = [s["seq"] for s in call["stored"]]
            # One call's chunks are contiguous, in the writer's order, after its earlier calls.
            assert seqs == list(range(seqs[0], seqs[0] + len(flat))), (writer, call["call"])
            assert seqs[0] > previous_seq, writer
            previous_seq = seqs[-1]
            assert [(s["role"], s["chunk"]) for s in call["stored"]] == flat
            assert [(by_seq[s]["role"], by_seq[s]["chunk"]) for s in seqs] == flat

    # Message ordinals regroup the log into exactly the messages written, in seq order.
    all_calls = sorted(
        (c for calls in reports.values() for c in calls), key=lambda c: c["stored"][0]["seq"]
    )
    expected = [(m["role"], m["chunks"]) for c in all_calls for m in c["messages"]]
    groups = [list(g) for _, g in groupby(rows, key=lambda r: r["message"])]
    assert [g[0]["message"] for g in groups] == list(range(1, len(expected) + 1))
    assert log["lastMessageOrdinal"] == len(expected)
    regrouped = []
    for group in groups:
        assert len({r["role"] for r in group}) == 1
        regrouped.append((group[0]["role"], [r["chunk"] for r in group]))
    assert regrouped == expected


def _sqlite_log(path, conversation_id: str) -> dict:
    with closing(sqlite3.connect(path)) as conn:
        rows = conn.execute(LOG_ROWS.format("?"), [conversation_id]).fetchall()
        last_seq, last_ordinal = conn.execute(COUNTERS.format("?"), [conversation_id]).fetchone()
    return {
        "rows": [
            {"seq": seq, "message": message, "role": role, "chunk": json.loads(payload)}
            for seq, message, role, payload in rows
        ],
        "lastSeq": last_seq,
        "lastMessageOrdinal": last_ordinal,
    }


def _postgres_log(url: str, conversation_id: str) -> dict:
    with psycopg.connect(url) as conn:
        rows = conn.execute(LOG_ROWS.format("%s"), [conversation_id]).fetchall()
        last_seq, last_ordinal = conn.execute(COUNTERS.format("%s"), [conversation_id]).fetchone()
    return {
        "rows": [
            {"seq": seq, "message": message, "role": role, "chunk": payload}
            for seq, message, role, payload in rows
        ],
        "lastSeq": last_seq,
        "lastMessageOrdinal": last_ordinal,
    }


def test_sqlite_writers_in_processes_and_threads_keep_the_log_gap_free(tmp_path):
    database = tmp_path / "log.sqlite3"
    settings = {"DISPATCH_VAR_DIR": str(tmp_path), "DISPATCH_SQLITE_PATH": str(database)}
    manage(["migrate", "--noinput"], **settings)

    reports = _write_concurrently(
        subprocess_env(**settings), "shared", processes=2, threads=4, calls=6
    )

    _assert_log_consistent(_sqlite_log(database, "shared"), reports)


@pytest.fixture(scope="module")
def postgres_reports(migrated_postgres_url, tmp_path_factory):
    """Concurrent writers (separate processes) to conversation "shared-pg" on PostgreSQL."""
    env = subprocess_env(
        DATABASE_URL=migrated_postgres_url, DISPATCH_VAR_DIR=str(tmp_path_factory.mktemp("var"))
    )
    return _write_concurrently(env, "shared-pg", processes=3, threads=2, calls=6)


def test_postgres_writers_in_processes_keep_the_log_gap_free(
    migrated_postgres_url, postgres_reports
):
    _assert_log_consistent(_postgres_log(migrated_postgres_url, "shared-pg"), postgres_reports)


def test_postgres_unique_seq_rejects_a_duplicate_insert(migrated_postgres_url, postgres_reports):
    copy_first_chunk = (
        "INSERT INTO chat_chunk (conversation_id, seq, message, role, type, payload, turn_id,"
        " step_id, created_at) SELECT conversation_id, seq, message + 1000, role, type, payload,"
        " turn_id, step_id, created_at FROM chat_chunk WHERE conversation_id = %s AND seq = 1"
    )

    with psycopg.connect(migrated_postgres_url) as conn:
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(copy_first_chunk, ["shared-pg"])
        conn.rollback()
        assert conn.execute(
            "SELECT count(*) FROM chat_chunk WHERE conversation_id = %s AND seq = 1", ["shared-pg"]
        ).fetchone() == (1,)


@pytest.mark.django_db
def test_unique_seq_rejects_a_duplicate_insert(user):
    conversation_ensure(user=user, conversation_id="dup")
    chunks_append(
        conversation_id="dup", messages=[Message("user", [{"type": "text", "text": "a"}])]
    )

    with pytest.raises(IntegrityError), transaction.atomic():
        Chunk.objects.create(
            conversation_id="dup", seq=1, message=2, role="user", type="text", payload={}
        )

    assert list(Chunk.objects.filter(conversation_id="dup").values_list("seq", "message")) == [
        (1, 1)
    ]


@pytest.mark.django_db
def test_creating_a_conversation_whose_id_is_taken_changes_nothing(user, other_user):
    assert conversation_create(user=user, conversation_id="taken", title="Mine") is not None

    assert conversation_create(user=other_user, conversation_id="taken", title="Theirs") is None
    assert conversation_create(user=user, conversation_id="taken", title="Again") is None

    with pytest.raises(NotFound):
        conversation_ensure(user=other_user, conversation_id="taken")
    assert conversation_ensure(user=user, conversation_id="taken").title == "Mine"
    titles = SearchEntry.objects.filter(conversation_id="taken").values_list("owner_id", "text")
    assert list(titles) == [(user.pk, "Mine")]

"""The history read (docs/protocol.md#5-http-api): the selector and ``GET /conversations/{id}`` against a model."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chat.models import Chunk
from chat.runtime import Message
from chat.selectors import HistoryWindow, history_slice
from chat.services._log import chunks_append, conversation_ensure
from tests.servers import REPO_ROOT, subprocess_env

pytestmark = pytest.mark.django_db

# Examples share the test's database: each gets a conversation of its own.
_conversation_ids = (f"hist-{n}" for n in itertools.count())

messages = st.lists(
    st.tuples(st.sampled_from(["user", "assistant", "tool", "system"]), st.integers(1, 3)),
    max_size=10,
)
windows = st.builds(
    HistoryWindow,
    since_seq=st.integers(0, 35),
    before_seq=st.none() | st.integers(1, 35),
    limit=st.none() | st.integers(1, 35),
)
examples = settings(
    max_examples=60,
    deadline=None,
    # The db fixture is function-scoped on purpose: examples never share a conversation.
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def _build_log(user, shape: list[tuple[str, int]]) -> tuple[str, list[dict]]:
    """Append messages of the given (role, chunk count) shape; the expected StoredChunks."""
    conversation_id = next(_conversation_ids)
    conversation_ensure(user=user, conversation_id=conversation_id)
    written = [
        Message(role, [{"type": "text", "text": f"m{m}c{c}"} for c in range(count)])
        for m, (role, count) in enumerate(shape)
    ]
    # Two appends, so the log spans more than one transaction.
    half = len(written) // 2
    chunks_append(conversation_id=conversation_id, messages=written[:half])
    chunks_append(conversation_id=conversation_id, messages=written[half:])
    flat = [(m.role, chunk) for m in written for chunk in m.chunks]
    return conversation_id, [
        {"seq": seq, "role": role, "chunk": chunk} for seq, (role, chunk) in enumerate(flat, 1)
    ]


def reference_slice(log: list[dict], window: HistoryWindow) -> tuple[list[dict], int]:
    """docs/protocol.md#5-http-api, read literally."""
    picked = [
        c
        for c in log
        if c["seq"] > window.since_seq
        and (window.before_seq is None or c["seq"] < window.before_seq)
    ]
    if window.limit is not None:
        picked = picked[len(picked) - window.limit :] if len(picked) > window.limit else picked
    return picked, picked[-1]["seq"] if picked else window.since_seq


def _query(window: HistoryWindow) -> dict:
    names = {"sinceSeq": window.since_seq, "beforeSeq": window.before_seq, "limit": window.limit}
    return {name: value for name, value in names.items() if value is not None}


@examples
@given(shape=messages, reads=st.lists(windows, min_size=1, max_size=4))
def test_history_slice_matches_the_reference(user, shape, reads):
    conversation_id, log = _build_log(user, shape)

    for window in reads:
        got = history_slice(conversation_id=conversation_id, window=window)
        assert got == reference_slice(log, window), window


@examples
@given(shape=messages, reads=st.lists(windows, min_size=1, max_size=4))
def test_http_history_matches_the_reference(api, user, shape, reads):
    conversation_id, log = _build_log(user, shape)

    for window in reads:
        response = api.get(f"/conversations/{conversation_id}", _query(window))
        assert response.status_code == 200, response.content
        chunks, latest = reference_slice(log, window)
        assert response.json() == {"chunks": chunks, "latestSeq": latest}, window


@pytest.mark.parametrize(
    "query",
    [
        {"sinceSeq": "-1"},
        {"sinceSeq": "abc"},
        {"sinceSeq": ""},
        {"sinceSeq": "1.5"},
        {"beforeSeq": "0"},
        {"beforeSeq": "-3"},
        {"beforeSeq": "x"},
        {"limit": "0"},
        {"limit": "-2"},
        {"limit": "ten"},
    ],
)
def test_http_malformed_zero_or_negative_window_is_400(api, user, query):
    conversation_ensure(user=user, conversation_id="mine")

    response = api.get("/conversations/mine", query)

    assert response.status_code == 400
    assert response.json()["error"]


def test_http_someone_elses_conversation_is_404(api, other_user):
    conversation_ensure(user=other_user, conversation_id="theirs")
    chunks_append(
        conversation_id="theirs", messages=[Message("user", [{"type": "text", "text": "secret"}])]
    )

    response = api.get("/conversations/theirs")

    assert response.status_code == 404
    assert "secret" not in response.content.decode()
    assert response.json()["error"]


def test_http_unknown_conversation_reads_as_empty(api):
    assert api.get("/conversations/never-seen").json() == {"chunks": [], "latestSeq": 0}
    assert api.get("/conversations/never-seen", {"sinceSeq": 7}).json() == {
        "chunks": [],
        "latestSeq": 7,
    }


# ---------------------------------------------------------------- O(k) tail reads

HISTORY_WINDOWS = [
    HistoryWindow(limit=20),
    HistoryWindow(before_seq=200, limit=20),
    HistoryWindow(since_seq=100, limit=20),
    HistoryWindow(since_seq=280),
]


def _sqlite_seq_index() -> str:
    """The name of SQLite's index on (conversation_id, seq) — the unique constraint's (the
    partial index of compaction chunks has the same columns)."""
    with connection.cursor() as cursor:
        for _, name, unique, *_ in cursor.execute("PRAGMA index_list(chat_chunk)").fetchall():
            columns = [row[2] for row in cursor.execute(f"PRAGMA index_info('{name}')")]
            if columns == ["conversation_id", "seq"] and unique:
                return name
    raise AssertionError("no (conversation_id, seq) index on chat_chunk")


def test_sqlite_history_reads_search_the_seq_index(user):
    for n in range(10):
        conversation_ensure(user=user, conversation_id=f"big-{n}")
        Chunk.objects.bulk_create(
            Chunk(conversation_id=f"big-{n}", seq=seq, message=seq, role="user", type="text",
                  payload={"type": "text", "text": "x"})
            for seq in range(1, 301)
        )  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # the planner decides with real statistics
    index = _sqlite_seq_index()

    for window in HISTORY_WINDOWS:
        with CaptureQueriesContext(connection) as queries:
            history_slice(conversation_id="big-3", window=window)
        (query,) = queries.captured_queries
        with connection.cursor() as cursor:
            plan = [row[-1] for row in cursor.execute("EXPLAIN QUERY PLAN " + query["sql"])]

        # One index search, no full scan, no temp B-tree to sort: reading k rows costs O(k).
        assert len(plan) == 1, (window, plan)
        assert plan[0].startswith(f"SEARCH chat_chunk USING INDEX {index} ("), (window, plan)
        assert "seq>?" in plan[0], (window, plan)


def test_postgres_tail_reads_scan_the_seq_index_backward(migrated_postgres_url):
    done = subprocess.run(
        [sys.executable, "-m", "tests.chat.explain_history"],
        cwd=REPO_ROOT,
        env=subprocess_env(DATABASE_URL=migrated_postgres_url),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr

    plans = json.loads(done.stdout)
    assert set(plans) == {"tail", "tail-before", "tail-since"}
    for name, [explained] in plans.items():
        limit = explained["Plan"]
        assert limit["Node Type"] == "Limit", (name, limit)
        [scan] = limit["Plans"]  # nothing between: no Sort, no Seq Scan
        assert scan["Node Type"] == "Index Scan", (name, scan)
        assert (scan["Index Name"], scan["Scan Direction"]) == ("chunk_unique_seq", "Backward")
        assert "seq >" in scan["Index Cond"], (name, scan)

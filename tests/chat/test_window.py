"""The web app's windowed transcript (docs/protocol.md#8-web-app-socket): the newest turns,
older and newer windows by seq without gap or duplicate, a turn larger than the window cut at
a step boundary, ``?at=<seq>``, and reads that do not grow with the conversation."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from chat import pages, selectors
from chat.runtime import Message, TurnMetrics
from chat.services import _log
from tests.chat.fill import conversation_fill

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def seqs(html: str) -> list[int]:
    """The seqs of the blocks shown (not the page's resync cursor, ``#history-seq``)."""
    return [int(s) for s in re.findall(r'(?<!id="history-seq" )data-seq="(\d+)"', html)]


def cursor(html: str, kind: str) -> int | None:
    found = re.search(rf'data-{kind}="(\d+)"', html)
    return int(found[1]) if found else None


def test_the_page_shows_the_newest_thirty_turns_with_a_sentinel_above(browser, user):
    conversation_fill(owner=user, conversation_id="w-100", turns=100)

    html = browser.get("/c/w-100").content.decode()

    assert seqs(html) == list(range(141, 201))  # turns 71-100, two chunks each
    assert "turn 71 ·" in html and "turn 100 ·" in html and "turn 70 ·" not in html
    assert cursor(html, "before") == 141 and cursor(html, "after") is None
    assert 'hx-get="/c/w-100/turns?beforeSeq=141"' in html
    assert 'hx-trigger="intersect once"' in html


def test_scrolling_up_loads_every_older_seq_once_in_order(browser, user):
    conversation_fill(owner=user, conversation_id="w-up", turns=100)
    html = browser.get("/c/w-up").content.decode()
    seen, before = seqs(html), cursor(html, "before")
    while before is not None:
        part = browser.get(f"/c/w-up/turns?beforeSeq={before}").content.decode()
        seen = seqs(part) + seen
        before = cursor(part, "before")
        assert cursor(part, "after") is None
    assert seen == list(range(1, 201))


def test_scrolling_down_from_a_seq_loads_every_newer_seq_once(browser, user):
    conversation_fill(owner=user, conversation_id="w-at", turns=100)

    html = browser.get("/c/w-at?at=101").content.decode()

    shown = seqs(html)
    assert 101 in shown and shown == list(range(shown[0], shown[-1] + 1))
    # 15 turns up to it, 15 from it on: its own turn is in both halves (29 turns).
    assert shown == list(range(73, 131))
    assert 'data-at="101"' in html
    after, before = cursor(html, "after"), cursor(html, "before")
    assert (before, after) == (shown[0], shown[-1])
    while after is not None:
        part = browser.get(f"/c/w-at/turns?sinceSeq={after}").content.decode()
        shown += seqs(part)
        after = cursor(part, "after")
        assert cursor(part, "before") is None
    assert shown == list(range(shown[0], 201))


def big_turn(conversation_id: str, user, steps: int) -> str:
    """One turn: a prompt, then ``steps`` steps of a tool call and its result."""
    _log.conversation_ensure(user=user, conversation_id=conversation_id)
    turn_id = "turn-1-bigone"
    _log.turn_begin(conversation_id=conversation_id, turn_id=turn_id, model="m", worker="")
    messages = [Message("user", [{"type": "text", "text": "do it"}])]
    for n in range(steps):
        step = f"{turn_id}#{n}"
        call = {"type": "tool-call", "toolCallId": f"c{n}", "toolName": "look", "input": {},
                "stepId": step}  # fmt: skip
        result = {"type": "tool-result", "toolCallId": f"c{n}", "toolName": "look",
                  "content": f"r{n}", "isError": False, "stepId": step}  # fmt: skip
        messages += [Message("assistant", [call]), Message("tool", [result])]
    _log.chunks_append(conversation_id=conversation_id, messages=messages, turn_id=turn_id)
    _log.turn_seal(turn_id=turn_id, metrics=TurnMetrics(turn_id, "stop"))
    return turn_id


def test_a_turn_larger_than_the_window_is_cut_at_a_step_boundary(user):
    big_turn("w-big", user, steps=700)  # 1,401 chunks in one turn

    window = selectors.transcript_window(conversation_id="w-big")

    assert 0 < len(window.rows) <= selectors.WINDOW_CHUNKS
    first = window.rows[0]
    assert first["role"] == "assistant" and first["chunk"]["type"] == "tool-call"
    assert window.rows[-1]["seq"] == 1401 and window.older == first["seq"]
    older = selectors.transcript_window(conversation_id="w-big", before_seq=window.older)
    assert older.rows[0]["seq"] == 1 and older.older is None
    assert [r["seq"] for r in older.rows + window.rows] == list(range(1, 1402))
    # Every result in a window has its call in the same window.
    for part in (older.rows, window.rows):
        calls = {r["chunk"]["toolCallId"] for r in part if r["chunk"]["type"] == "tool-call"}
        results = {r["chunk"]["toolCallId"] for r in part if r["chunk"]["type"] == "tool-result"}
        assert results <= calls


def test_reads_do_not_grow_with_the_conversation(browser, user):
    conversation_fill(owner=user, conversation_id="w-small", turns=50)
    conversation_fill(owner=user, conversation_id="w-large", turns=5000)
    counts, sizes = {}, {}
    for conversation_id in ("w-small", "w-large"):
        with CaptureQueriesContext(connection) as queries:
            response = browser.get(f"/c/{conversation_id}")
        counts[conversation_id] = len(queries)
        sizes[conversation_id] = len(response.content)
        metrics = [q["sql"] for q in queries if "metrics_turnmetrics" in q["sql"]]
        # Turn metrics are read for the visible turns only, never the whole conversation.
        assert all("IN (" in sql or "LIMIT" in sql for sql in metrics), metrics
    assert counts["w-small"] == counts["w-large"]
    assert abs(sizes["w-small"] - sizes["w-large"]) < 0.05 * sizes["w-small"]


def test_a_window_fragment_needs_one_cursor(browser, user):
    conversation_fill(owner=user, conversation_id="w-bad", turns=3)
    assert browser.get("/c/w-bad/turns").status_code == 400
    assert browser.get("/c/w-bad/turns?beforeSeq=3&sinceSeq=1").status_code == 400
    assert browser.get("/c/w-bad/turns?beforeSeq=x").status_code == 400
    assert browser.get("/c/w-nothing/turns?beforeSeq=3").status_code == 404


def test_the_running_turns_chunks_are_left_to_the_live_view(user):
    conversation_fill(owner=user, conversation_id="w-run", turns=3)
    _log.turn_begin(conversation_id="w-run", turn_id="turn-9-running", model="m", worker="")
    _log.chunks_append(
        conversation_id="w-run",
        messages=[Message("user", [{"type": "text", "text": "now"}])],
        turn_id="turn-9-running",
    )
    view = pages.transcript(conversation_id="w-run")
    assert view.running and view.seq == 6
    assert [t.number for t in view.turns] == [1, 2, 3]


@pytest.mark.django_db(transaction=True)
async def test_the_sockets_resync_sends_one_window_not_the_whole_history(user, token):
    from channels.db import database_sync_to_async
    from channels.testing import WebsocketCommunicator

    from tests.security.conftest import application

    await database_sync_to_async(conversation_fill)(owner=user, conversation_id="w-ws", turns=500)
    app = await application()
    socket = WebsocketCommunicator(app, f"/ws/ui?conversation=w-ws&seq=0&token={token}")
    assert (await socket.connect(timeout=10))[0]
    first = await socket.receive_from(timeout=10)
    await socket.disconnect()
    assert 'id="history" hx-swap-oob="innerHTML"' in first
    shown = seqs(first.split('id="history-seq"')[0])
    assert shown == list(range(941, 1001))  # the newest 30 turns of 500
    assert 'data-before="941"' in first

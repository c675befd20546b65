"""The windowed transcript in Chromium (docs/protocol.md#8-web-app-socket): scrolling a
5,000-chunk conversation up to its first message loads every seq once, in order, keeps the
reading position, and keeps the DOM bounded; ``?at=<seq>`` opens at that seq."""

from __future__ import annotations

import subprocess
import sys

import pytest
from playwright.sync_api import expect

from tests.servers import REPO_ROOT, subprocess_env

CHUNKS = 5000
SEQS_IN_VIEW = """() => Array.from(document.querySelectorAll('#history [data-seq]'))
    .map(el => Number(el.dataset.seq))"""


@pytest.fixture(scope="module")
def long_conversation(stack_env, session_cookie) -> str:
    conversation_id = "scroll-5000"
    subprocess.run(
        [sys.executable, "-m", "tests.chat.fill", "alice", conversation_id, str(CHUNKS // 2)],
        cwd=REPO_ROOT,
        env=subprocess_env(**stack_env),
        check=True,
        capture_output=True,
    )
    return conversation_id


def test_scrolling_to_the_first_message_loads_every_seq_once_in_order(
    page, daphne, long_conversation
):
    page.goto(f"{daphne.url}/c/{long_conversation}")
    expect(page.locator("body[data-socket=open]")).to_have_count(1)
    transcript = page.locator("#transcript")
    seen: set[int] = set()
    loads = 0
    while True:
        shown = page.evaluate(SEQS_IN_VIEW)
        assert shown == list(range(shown[0], shown[0] + len(shown))), "no gap, no duplicate"
        assert page.locator("#history > section.turn").count() <= 90  # the DOM stays bounded
        seen.update(shown)
        if page.locator("#history .history-sentinel.older").count() == 0:
            break
        anchor = page.locator(f'#history [data-seq="{shown[0]}"]')
        transcript.evaluate("el => el.scrollTop = 0")  # the sentinel comes into view
        top_before = anchor.bounding_box()["y"]
        page.wait_for_function(
            "first => Number(document.querySelector('#history [data-seq]').dataset.seq) < first",
            arg=shown[0],
        )
        # The reader's place is kept: what was at the top is where it was.
        assert abs(anchor.bounding_box()["y"] - top_before) < 80
        loads += 1
    assert seen == set(range(1, CHUNKS + 1))
    assert page.evaluate(SEQS_IN_VIEW)[0] == 1
    assert loads >= CHUNKS // 60 - 1  # a window at a time: 30 turns of 2 chunks


def test_a_link_to_a_seq_opens_the_window_around_it(page, daphne, long_conversation):
    page.goto(f"{daphne.url}/c/{long_conversation}?at=2001")
    target = page.locator('#history [data-seq="2001"]')
    expect(target).to_have_class("bubble user target")
    expect(target).to_be_in_viewport()
    expect(page.locator("#history .history-sentinel.older")).to_have_count(1)
    newer = page.locator("#history .history-sentinel.newer")
    expect(newer).to_have_count(1)
    newer.scroll_into_view_if_needed()  # scrolling down loads the next window
    page.wait_for_function(
        "() => Math.max(...Array.from(document.querySelectorAll('#history [data-seq]'))"
        ".map(el => Number(el.dataset.seq))) > 2030"
    )
    shown = page.evaluate(SEQS_IN_VIEW)
    assert shown == list(range(shown[0], shown[0] + len(shown)))

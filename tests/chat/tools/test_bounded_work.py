"""No tool call can stall the server: linear-time matching, work off the event loop, a time
budget checked between bounded steps, and caps on what one call reads."""

from __future__ import annotations

import asyncio
import os
import re
import threading
from pathlib import Path

import pytest

import chat.tools.reading as reading
from chat.runtime.types import ToolContext
from chat.tools.writing import EDIT_SIZE_CAP

HANG_GUARD = 60  # seconds; only a bound so that a regression fails instead of hanging

# Each would backtrack for longer than the universe exists with Python's re on these lines.
CATASTROPHIC = ["(a+)+$", "(a|aa)+$", "(a|a)*b", "(x+x+)+y", "^(([a-z])+.)+[A-Z]([a-z])+$"]


@pytest.mark.parametrize("pattern", CATASTROPHIC)
async def test_catastrophic_patterns_return_promptly(run, workspace: Path, pattern: str) -> None:
    (workspace / "crafted.txt").write_text(("a" * 100 + "!\n") * 50 + ("x" * 100 + "\n") * 50)
    outcome = await asyncio.wait_for(run("search_files", pattern=pattern), HANG_GUARD)
    assert outcome.content == f"no matches for {pattern!r}" and not outcome.is_error


async def test_a_catastrophic_glob_returns_promptly(run, workspace: Path) -> None:
    deep = workspace.joinpath(*["a"] * 40)
    deep.mkdir(parents=True)
    (deep / "y.txt").write_text("y")
    glob = "/".join(["**"] * 15) + "/x"
    outcome = await asyncio.wait_for(run("list_files", glob=glob), HANG_GUARD)
    assert outcome.content == "(no matching entries)"


LINES = [
    "alpha beta",
    "",
    "  gamma",
    "beta$ and more",
    "a" * 50,
    "ä ö ü",
    "tab\there",
    "end beta",
]
PATTERNS = [
    "beta",
    "^beta",
    "beta$",
    "^$",
    "a+$",
    "^ ",
    "ö",
    r"\s",
    "x*",
    r"\bgamma\b",
    "(?i)ALPHA",
    "^[^a]",
    r"beta\$",
    ".{50}",
]


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("final_newline", [True, False])
@pytest.mark.parametrize("block", [64, 1 << 20])
async def test_matches_are_those_of_matching_line_by_line(
    run, workspace: Path, monkeypatch, newline: str, final_newline: bool, block: int
) -> None:
    """Block-wise RE2 matching finds exactly the lines Python's re finds line by line."""
    monkeypatch.setattr(reading, "SEARCH_BLOCK", block)
    text = newline.join(LINES) + (newline if final_newline else "")
    (workspace / "f.txt").write_bytes(text.encode())
    for pattern in PATTERNS:
        expected = [
            f"f.txt:{number}: {line}"
            for number, line in enumerate(LINES, start=1)
            if re.search(pattern, line)
        ]
        outcome = await run("search_files", pattern=pattern)
        found = [] if outcome.content.startswith("no matches") else outcome.content.splitlines()
        assert found == expected, pattern


async def test_a_line_longer_than_a_block_is_searched_in_pieces(
    run, workspace: Path, monkeypatch
) -> None:
    monkeypatch.setattr(reading, "SEARCH_BLOCK", 16)
    long_line = "x" * 100 + "needle" + "y" * 100
    (workspace / "f.txt").write_text(f"short\n{long_line}\nafter needle\n")
    needle = await run("search_files", pattern="needle")
    assert [line.split(": ")[0] for line in needle.content.splitlines()] == ["f.txt:2", "f.txt:3"]
    everywhere = await run("search_files", pattern="[xy]")  # in many pieces: reported once
    assert [line.split(": ")[0] for line in everywhere.content.splitlines()] == ["f.txt:2"]


async def test_matching_lines_are_shown_capped(run, workspace: Path) -> None:
    (workspace / "f.txt").write_text("é" * 1000 + "needle\n")
    outcome = await run("search_files", pattern="needle")
    assert outcome.content == f"f.txt:1: {'é' * reading.MATCH_LINE_CAP} … [line truncated]"


# ---------------------------------------------------------------- the time budget


@pytest.fixture
def no_time(monkeypatch) -> None:
    monkeypatch.setattr("chat.tools.base.TIME_BUDGET", 0)


async def test_search_stops_when_the_budget_is_spent(run, workspace: Path, no_time) -> None:
    (workspace / "f.txt").write_text("needle\n")
    outcome = await run("search_files", pattern="needle")
    assert not outcome.is_error
    assert outcome.content == (
        "no matches for 'needle'\n… [stopped after 0s, 0 files searched; the results are "
        "incomplete: narrow `path` or the pattern]"
    )


async def test_listing_stops_when_the_budget_is_spent(run, workspace: Path, no_time) -> None:
    (workspace / "f.txt").write_text("x")
    outcome = await run("list_files", glob="**")
    assert outcome.content == "… [stopped after 0s; the listing is incomplete: narrow `path`]"


async def test_reading_stops_when_the_budget_is_spent(run, workspace: Path, no_time) -> None:
    (workspace / "f.txt").write_text("one\ntwo\n")
    outcome = await run("read_file", path="f.txt", offset=2)
    assert outcome.is_error
    assert outcome.content == "stopped after 0s at line 1 of f.txt, before offset 2"


async def test_a_search_runs_off_the_event_loop_and_stops_when_cancelled(
    run, workspace: Path, monkeypatch
) -> None:
    """While the search's thread is busy the loop serves others; cancelling the call (a
    stopped turn) makes the thread stop at its next check instead of running on."""
    for name in ("a.txt", "b.txt", "c.txt"):
        (workspace / name).write_text("needle\n")
    in_search = threading.Event()
    release = threading.Event()
    probed: list[str] = []
    real_is_binary = reading.is_binary

    def is_binary(path: Path) -> bool:
        probed.append(path.name)
        in_search.set()
        release.wait(HANG_GUARD)  # the thread is busy on a.txt until the test releases it
        return real_is_binary(path)

    finished = threading.Event()
    real_search = reading.SearchFiles._search

    def search(*args):
        try:
            return real_search(*args)
        finally:
            finished.set()

    monkeypatch.setattr(reading, "is_binary", is_binary)
    monkeypatch.setattr(reading.SearchFiles, "_search", staticmethod(search))
    tool = run.tools["search_files"]
    task = asyncio.create_task(tool.run({"pattern": "needle"}, ToolContext(str(workspace), None)))
    # This coroutine runs while the search's thread is busy: the loop is free.
    assert await asyncio.to_thread(in_search.wait, HANG_GUARD)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=HANG_GUARD)
    assert task in done and task.cancelled()
    release.set()
    # The thread finishes a.txt, then finds its budget cancelled and searches nothing else.
    assert await asyncio.to_thread(finished.wait, HANG_GUARD)
    assert probed == ["a.txt"]


async def test_edit_file_refuses_a_huge_file(run, workspace: Path) -> None:
    (workspace / "huge.log").write_bytes(b"")
    os.truncate(workspace / "huge.log", EDIT_SIZE_CAP + 1)  # sparse: no time or disk spent
    outcome = await run("edit_file", path="huge.log", oldString="a", newString="b")
    assert outcome.is_error
    assert outcome.content == (
        f"huge.log is {EDIT_SIZE_CAP + 1:,} bytes; edit_file works on files up to "
        f"{EDIT_SIZE_CAP:,} bytes"
    )

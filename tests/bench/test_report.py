"""bench/report.py: the conversation page's section, alone or in the whole report."""

from __future__ import annotations

from bench import report

PAGE = {
    "100": {"medianMs": 40.0, "bytes": 26000, "repeats": 30, "fillSeconds": 0.0},
    "1000000": {"medianMs": 52.0, "bytes": 27500, "repeats": 30, "fillSeconds": 50.1},
}


def test_the_page_section_states_the_target_from_the_ratio():
    lines = report._page_lines(PAGE)
    assert lines[0] == report.PAGE_TITLE
    assert "| 1,000,000 | 52 | 27,500 | 30 | 50.1 |" in lines
    assert lines[-1] == (
        "Target: the largest within 1.5× of the smallest → time 1.30, bytes 1.06: **met**."
    )
    slow = {**PAGE, "1000000": {**PAGE["1000000"], "medianMs": 61.0}}
    assert report._page_lines(slow)[-1].endswith("time 1.52, bytes 1.06: **missed**.")


def test_only_the_page_section_is_replaced():
    machine = {"date": "today", "load average at start": "0.1 0.1 0.1"}
    section = report.page_section(PAGE, machine, 12.0)
    text = "# Results\n\n## A\n\na\n\n" + report.PAGE_TITLE + "\n\nold\n\n## B\n\nb\n"
    replaced = report.replace_section(text, report.PAGE_TITLE, section)
    assert replaced.startswith("# Results\n\n## A\n\na\n\n" + section)
    assert replaced.endswith("\n## B\n\nb\n") and "old" not in replaced
    assert report.replace_section("# Results\n", report.PAGE_TITLE, section) == (
        "# Results\n\n" + section
    )


def test_the_burst_section_is_replaced_in_place_and_keeps_the_blank_line(tmp_path):
    from bench import burst

    results = tmp_path / "RESULTS.md"
    results.write_text(f"# Results\n\n{burst.SECTION}\n\nold rows\n\n## Full-text search\n\ns\n")
    burst.write_section(results, f"{burst.SECTION}\n\nnew rows\n")
    assert results.read_text() == (
        f"# Results\n\n{burst.SECTION}\n\nnew rows\n\n## Full-text search\n\ns\n"
    )
    burst.write_section(results, f"{burst.SECTION}\n\nnewer rows\n")  # again: the same shape
    assert results.read_text().count("\n\n## Full-text search") == 1

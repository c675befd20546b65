"""The built-in tools: behaviour, argument validation, output caps, specs."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from chat.config import ToolsConfig
from chat.tools import builtin_tools
from chat.tools.base import OUTPUT_CAP, truncate
from chat.tools.reading import RE2_SYNTAX

READERS = ["read_file", "list_files", "search_files"]
WRITERS = ["write_file", "edit_file"]


def test_builtin_set_and_concurrency_safety() -> None:
    tools = builtin_tools(ToolsConfig())
    assert sorted(tools) == sorted(READERS + WRITERS)
    assert all(tools[name].concurrency_safe for name in READERS)
    assert not any(tools[name].concurrency_safe for name in WRITERS)
    with_shell = builtin_tools(ToolsConfig(run_shell=True, run_shell_timeout=7))
    assert "run_shell" in with_shell and not with_shell["run_shell"].concurrency_safe
    assert "default 7" in with_shell["run_shell"].spec.description


@pytest.mark.parametrize(
    ("name", "required"),
    [
        ("read_file", ["path"]),
        ("list_files", []),
        ("search_files", ["pattern"]),
        ("write_file", ["path", "content"]),
        ("edit_file", ["path", "oldString", "newString"]),
        ("run_shell", ["command"]),
    ],
)
def test_specs_are_strict_json_schemas(name: str, required: list[str]) -> None:
    spec = builtin_tools(ToolsConfig(run_shell=True))[name].spec
    assert spec.name == name and spec.description
    assert spec.parameters["type"] == "object"
    assert spec.parameters["required"] == required
    assert spec.parameters["additionalProperties"] is False
    assert set(required) <= set(spec.parameters["properties"])


@pytest.mark.parametrize(
    ("name", "arguments", "message"),
    [
        ("read_file", {}, "missing required argument 'path'"),
        ("read_file", {"path": 3}, "argument 'path' must be a string, got a number"),
        ("read_file", {"path": "a", "offset": "2"}, "'offset' must be an integer, got a string"),
        ("read_file", {"path": "a", "offset": True}, "'offset' must be an integer, got a boolean"),
        ("read_file", {"path": "a", "offset": 0}, "'offset' must be at least 1, got 0"),
        ("read_file", {"path": "a", "lines": 2}, "unknown argument 'lines'"),
        ("write_file", {"path": "a", "content": None}, "'content' must be a string, got null"),
        (
            "edit_file",
            {"path": "a", "oldString": "x", "newString": "y", "replaceAll": "yes"},
            "'replaceAll' must be a boolean, got a string",
        ),
        ("run_shell", {"command": "true", "timeout": 0}, "'timeout' must be greater than 0"),
    ],
)
async def test_bad_arguments_are_clear_errors(
    run, name: str, arguments: dict, message: str
) -> None:
    outcome = await run.tools[name].run(arguments, None)
    assert outcome.is_error
    assert outcome.content.startswith(f"{name}: ")
    assert message in outcome.content


async def test_arguments_that_are_not_an_object(run) -> None:
    outcome = await run.tools["read_file"].run(["a"], None)
    assert outcome.is_error and "must be a JSON object" in outcome.content


def test_truncate_names_what_was_cut() -> None:
    assert truncate("x" * 12_350, cap=5) == "xxxxx\n… [truncated: 12,345 more characters]"
    assert truncate("short", cap=5) == "short"


# ---------------------------------------------------------------- read_file


@pytest.fixture
def numbers(workspace: Path) -> Path:
    path = workspace / "numbers.txt"
    path.write_text("".join(f"line {n}\n" for n in range(1, 11)))
    return path


async def test_read_file_numbers_lines(run, numbers: Path) -> None:
    outcome = await run("read_file", path="numbers.txt", offset=9)
    assert outcome.content == "     9\tline 9\n    10\tline 10"
    assert not outcome.is_error


async def test_read_file_limit_says_where_to_continue(run, numbers: Path) -> None:
    outcome = await run("read_file", path="numbers.txt", offset=2, limit=2)
    assert outcome.content == (
        "     2\tline 2\n     3\tline 3\n… [more lines follow; continue with offset=4]"
    )


async def test_read_file_offset_past_the_end_is_an_error(run, numbers: Path) -> None:
    outcome = await run("read_file", path="numbers.txt", offset=11)
    assert outcome.is_error
    assert outcome.content == "offset 11 is past the end of numbers.txt (10 lines)"


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda ws: None, "missing.txt does not exist"),
        (lambda ws: (ws / "missing.txt").mkdir(), "missing.txt is a directory"),
        (
            lambda ws: (ws / "missing.txt").write_bytes(b"\x89PNG\0\0"),
            "missing.txt is a binary file",
        ),
    ],
)
async def test_read_file_failures(run, workspace: Path, setup, message: str) -> None:
    setup(workspace)
    outcome = await run("read_file", path="missing.txt")
    assert outcome.is_error and message in outcome.content


async def test_read_file_empty_file(run, workspace: Path) -> None:
    (workspace / "empty.txt").write_text("")
    outcome = await run("read_file", path="empty.txt")
    assert outcome.content == "(empty.txt is empty)" and not outcome.is_error


async def test_read_file_stops_before_the_output_cap_and_says_where_to_go_on(
    run, workspace: Path
) -> None:
    (workspace / "big.txt").write_text(("y" * 99 + "\n") * 1000)
    outcome = await run("read_file", path="big.txt")
    body, note = outcome.content.rsplit("\n", 1)
    fitting = (OUTPUT_CAP + 1) // (6 + 1 + 99 + 1)  # numbered lines joined by newlines
    assert body.splitlines() == [f"{n:>6}\t{'y' * 99}" for n in range(1, fitting + 1)]
    assert len(body) <= OUTPUT_CAP < len(body) + 1 + 6 + 1 + 99
    assert note == f"… [more lines follow; continue with offset={fitting + 1}]"
    rest = await run("read_file", path="big.txt", offset=fitting + 1)
    assert rest.content.splitlines()[0] == f"{fitting + 1:>6}\t{'y' * 99}"


async def test_read_file_cuts_long_lines_without_reading_them_whole(run, workspace) -> None:
    (workspace / "long.txt").write_text("a" * 300_000 + "\nshort\n" + "b" * 2001)
    outcome = await run("read_file", path="long.txt")
    assert outcome.content.splitlines() == [
        f"     1\t{'a' * 2000} … [line truncated]",
        "     2\tshort",
        f"     3\t{'b' * 2000} … [line truncated]",
    ]


# ---------------------------------------------------------------- list_files


@pytest.fixture
def tree(workspace: Path) -> Path:
    for name in ["a.py", "b.txt", "src/c.py", "src/deep/d.py", ".git/config.py"]:
        (workspace / name).parent.mkdir(parents=True, exist_ok=True)
        (workspace / name).write_text(f"# {name}\n")
    return workspace


async def test_list_files_lists_one_directory(run, tree: Path) -> None:
    assert (await run("list_files")).content.splitlines() == [".git/", "a.py", "b.txt", "src/"]
    assert (await run("list_files", path="src")).content.splitlines() == ["src/c.py", "src/deep/"]


async def test_list_files_glob_walks_below_path(run, tree: Path) -> None:
    everything = await run("list_files", glob="**/*.py")
    assert everything.content.splitlines() == ["a.py", "src/c.py", "src/deep/d.py"]
    in_src = await run("list_files", path="src", glob="*.py")
    assert in_src.content.splitlines() == ["src/c.py"]
    nothing = await run("list_files", glob="*.rs")
    assert nothing.content == "(no matching entries)" and not nothing.is_error


async def test_list_files_of_a_file_is_an_error(run, tree: Path) -> None:
    outcome = await run("list_files", path="a.py")
    assert outcome.is_error and outcome.content == "a.py is not a directory"


# ---------------------------------------------------------------- search_files


async def test_search_files_reports_file_line_text(run, tree: Path) -> None:
    (tree / "blob.bin").write_bytes(b"\0# a.py\n")
    outcome = await run("search_files", pattern=r"#.*\.py")
    assert outcome.content.splitlines() == [
        "a.py:1: # a.py",
        "src/c.py:1: # src/c.py",
        "src/deep/d.py:1: # src/deep/d.py",
    ]


async def test_search_files_in_one_file(run, numbers: Path) -> None:
    outcome = await run("search_files", pattern="line 1", path="numbers.txt")
    assert outcome.content.splitlines() == ["numbers.txt:1: line 1", "numbers.txt:10: line 10"]


async def test_search_files_without_matches_is_not_an_error(run, tree: Path) -> None:
    outcome = await run("search_files", pattern="nowhere")
    assert outcome.content == "no matches for 'nowhere'" and not outcome.is_error


async def test_search_files_invalid_regex(run, tree: Path) -> None:
    outcome = await run("search_files", pattern="(unclosed")
    assert outcome.is_error
    assert outcome.content.startswith(
        "invalid regular expression '(unclosed': missing ): (unclosed. search_files uses RE2 syntax"
    )


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        (r"(a)\1", r"invalid escape sequence: \1"),
        ("(?=a)b", "invalid perl operator: (?="),
        ("(?<!a)b", "invalid perl operator: (?<!"),
        (r"a\Z", r"invalid escape sequence: \Z"),
        ("a++", "bad repetition operator: ++"),
    ],
)
async def test_search_files_names_what_re2_does_not_support(
    run, tree: Path, pattern: str, problem: str
) -> None:
    outcome = await run("search_files", pattern=pattern)
    assert outcome.is_error
    assert outcome.content == (
        f"invalid regular expression {pattern!r}: {problem}. search_files uses {RE2_SYNTAX}"
    )
    assert "backreferences" in RE2_SYNTAX and "lookahead or lookbehind" in RE2_SYNTAX
    assert RE2_SYNTAX in run.tools["search_files"].spec.description


# ---------------------------------------------------------------- write_file / edit_file


async def test_write_file_creates_with_parents(run, workspace: Path) -> None:
    outcome = await run("write_file", path="new/dir/f.txt", content="héllo")
    assert outcome.content == "created new/dir/f.txt (6 bytes)" and not outcome.is_error
    assert (workspace / "new/dir/f.txt").read_text() == "héllo"


async def test_write_file_refuses_to_clobber_unless_overwrite(run, workspace: Path) -> None:
    (workspace / "f.txt").write_text("old")
    refused = await run("write_file", path="f.txt", content="new")
    assert refused.is_error
    assert refused.content == "f.txt already exists; pass overwrite: true to replace it"
    assert (workspace / "f.txt").read_text() == "old"
    done = await run("write_file", path="f.txt", content="new", overwrite=True)
    assert done.content == "overwrote f.txt (3 bytes)"
    assert (workspace / "f.txt").read_text() == "new"


async def test_write_file_onto_a_directory(run, tree: Path) -> None:
    outcome = await run("write_file", path="src", content="x", overwrite=True)
    assert outcome.is_error and outcome.content == "src is a directory"


@pytest.fixture
def source(workspace: Path) -> Path:
    path = workspace / "code.py"
    path.write_bytes(b"x = 1\r\ny = 1\r\nz = 2\r\n")
    return path


async def test_edit_file_replaces_a_unique_string(run, source: Path) -> None:
    outcome = await run("edit_file", path="code.py", oldString="z = 2", newString="z = 3")
    assert outcome.content == "replaced 1 occurrence in code.py" and not outcome.is_error
    assert (
        await asyncio.to_thread(source.read_bytes) == b"x = 1\r\ny = 1\r\nz = 3\r\n"
    )  # line endings kept


async def test_edit_file_refuses_an_ambiguous_string(run, source: Path) -> None:
    outcome = await run("edit_file", path="code.py", oldString="= 1", newString="= 5")
    assert outcome.is_error
    assert outcome.content.startswith("oldString occurs 2 times in code.py;")
    assert "replaceAll" in outcome.content
    assert await asyncio.to_thread(source.read_bytes) == b"x = 1\r\ny = 1\r\nz = 2\r\n"


async def test_edit_file_replace_all(run, source: Path) -> None:
    outcome = await run(
        "edit_file", path="code.py", oldString="= 1", newString="= 5", replaceAll=True
    )
    assert outcome.content == "replaced 2 occurrences in code.py"
    assert await asyncio.to_thread(source.read_bytes) == b"x = 5\r\ny = 5\r\nz = 2\r\n"


@pytest.mark.parametrize(
    ("path", "old", "new", "message"),
    [
        ("code.py", "w = 0", "w = 1", "oldString not found in code.py"),
        ("code.py", "", "w", "oldString must not be empty"),
        ("code.py", "x", "x", "oldString and newString are identical"),
        ("nope.py", "x", "y", "nope.py does not exist"),
    ],
)
async def test_edit_file_failures(run, source: Path, path, old, new, message) -> None:
    outcome = await run("edit_file", path=path, oldString=old, newString=new)
    assert outcome.is_error and message in outcome.content
    assert await asyncio.to_thread(source.read_bytes) == b"x = 1\r\ny = 1\r\nz = 2\r\n"


async def test_missing_working_directory_is_an_error(run, workspace: Path) -> None:
    await asyncio.to_thread(workspace.rmdir)
    outcome = await run("list_files")
    assert outcome.is_error
    assert re.fullmatch(r"the working directory .*workspace does not exist", outcome.content)

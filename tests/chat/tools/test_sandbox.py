"""Every way out of the working directory is refused (docs/tools.md)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from chat.config import ToolsConfig
from chat.runtime.types import ToolContext, ToolOutcome
from chat.tools import builtin_tools
from chat.tools.sandbox import SandboxError, glob_regex, resolve

ESCAPES = [
    "../outside/secret.txt",
    "sub/../../outside/secret.txt",
    "link.txt",  # a symlinked file pointing outside
    "linkdir/secret.txt",  # through a symlinked directory
    "deep/hop/outside/secret.txt",  # a symlink in a parent component (deep/hop -> ../..)
]


@pytest.fixture(autouse=True)
def escape_hatches(workspace: Path, outside: Path) -> None:
    (workspace / "sub").mkdir()
    (workspace / "deep").mkdir()
    (workspace / "inside.txt").write_text("inside\n")
    os.symlink(outside / "secret.txt", workspace / "link.txt")
    os.symlink(outside, workspace / "linkdir")
    os.symlink("../..", workspace / "deep" / "hop")
    os.symlink("inside.txt", workspace / "alias.txt")  # stays inside: allowed


@pytest.mark.parametrize("path", [*ESCAPES, "ABSOLUTE"])
async def test_read_file_refuses_every_escape(run, outside: Path, path: str) -> None:
    if path == "ABSOLUTE":
        path = str(outside / "secret.txt")
    outcome = await run("read_file", path=path)
    assert outcome.is_error
    assert "outside the working directory" in outcome.content
    assert "TOP SECRET" not in outcome.content


@pytest.mark.parametrize("path", ["..", "linkdir", "deep/hop", "ABSOLUTE"])
async def test_list_and_search_refuse_escaping_directories(run, outside: Path, path: str) -> None:
    if path == "ABSOLUTE":
        path = str(outside)
    listed = await run("list_files", path=path)
    searched = await run("search_files", pattern="SECRET", path=path)
    assert listed.is_error and "outside the working directory" in listed.content
    assert searched.is_error and "outside the working directory" in searched.content


async def test_absolute_path_inside_the_working_directory_is_allowed(run, workspace) -> None:
    outcome = await run("read_file", path=str(workspace / "inside.txt"))
    assert not outcome.is_error
    assert outcome.content == "     1\tinside"


async def test_symlink_inside_the_working_directory_is_allowed(run) -> None:
    outcome = await run("read_file", path="alias.txt")
    assert outcome.content == "     1\tinside"


async def test_walks_skip_escaping_symlinks(run) -> None:
    searched = await run("search_files", pattern="SECRET|inside")
    assert searched.content.splitlines() == ["alias.txt:1: inside", "inside.txt:1: inside"]
    listed = await run("list_files")
    assert listed.content.splitlines() == ["alias.txt", "deep/", "inside.txt", "sub/"]
    globbed = await run("list_files", glob="**")
    assert "secret.txt" not in globbed.content
    assert "link" not in globbed.content


@pytest.mark.parametrize("glob", ["../*", "**/../../outside/*", "sub/../../*", "/etc/*"])
async def test_globs_that_could_escape_are_refused(run, glob: str) -> None:
    outcome = await run("list_files", glob=glob)
    assert outcome.is_error
    assert "may not be absolute or contain '..'" in outcome.content


async def test_write_through_a_symlink_is_refused(run, workspace: Path, outside: Path) -> None:
    os.symlink(outside / "new.txt", workspace / "dangling.txt")
    clobber = await run("write_file", path="link.txt", content="owned", overwrite=True)
    create = await run("write_file", path="dangling.txt", content="owned")
    edit = await run("edit_file", path="link.txt", oldString="TOP", newString="NO")
    nested = await run("write_file", path="linkdir/made/x.txt", content="owned")
    assert all(o.is_error for o in (clobber, create, edit, nested))
    assert (outside / "secret.txt").read_text() == "TOP SECRET\n"
    assert os.listdir(outside) == ["secret.txt"]


async def test_write_with_dotdot_creates_nothing_outside(run, outside: Path) -> None:
    outcome = await run("write_file", path="../outside/made/x.txt", content="owned")
    assert outcome.is_error
    assert not (outside / "made").exists()


async def test_a_symlinked_working_directory_works(tmp_path: Path, workspace: Path) -> None:
    os.symlink(workspace, tmp_path / "cwd-link")
    tool = builtin_tools(ToolsConfig())["read_file"]
    outcome = await tool.run({"path": "inside.txt"}, ToolContext(str(tmp_path / "cwd-link"), _emit))
    assert outcome == ToolOutcome("     1\tinside")


async def _emit(data: str, stream: str) -> None:
    raise AssertionError("read_file streams nothing")


def test_resolve_rejects_nul_bytes(workspace: Path) -> None:
    with pytest.raises(SandboxError, match="NUL"):
        resolve(workspace, "a\0b")


@pytest.mark.parametrize(
    ("glob", "path", "matches"),
    [
        ("*.py", "a.py", True),
        ("*.py", "src/a.py", False),
        ("**/*.py", "a.py", True),
        ("**/*.py", "src/deep/a.py", True),
        ("src/**", "src/deep/a.py", True),
        ("?.txt", "ab.txt", False),
        ("[ab].txt", "b.txt", True),
        ("[!ab].txt", "b.txt", False),
    ],
)
def test_glob_semantics(glob: str, path: str, matches: bool) -> None:
    assert bool(glob_regex(glob).match(path)) is matches

"""The read-only built-ins: read_file, list_files, search_files (all concurrency-safe).

Their work runs in a tool thread (``run_bounded``) in bounded steps: one line, one directory
entry, one block of a file. Between steps it checks the call's time budget and stops with what
it has once the budget is spent or the call is cancelled. Memory is bounded as well: no line is
ever held whole (read_file keeps ``LINE_CAP`` characters of one, search_files reads
``SEARCH_BLOCK`` bytes at a time), and search_files matches with RE2, which takes time linear
in the text for every pattern.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import re2

from chat.runtime.types import ToolContext, ToolOutcome, ToolSpec
from chat.tools.base import (
    OUTPUT_CAP,
    Budget,
    BuiltinTool,
    ToolFailure,
    object_schema,
    run_bounded,
    truncate,
)
from chat.tools.sandbox import (
    display,
    glob_regex,
    is_inside,
    re2_message,
    resolve,
    sandbox_root,
    walk_entries,
    walk_files,
)

DEFAULT_READ_LIMIT = 2000  # lines per read_file call
LINE_CAP = 2000  # characters per line shown
MAX_ENTRIES = 1000  # list_files
MAX_MATCHES = 500  # search_files
MATCH_LINE_CAP = 300  # characters of a matching line shown
BINARY_PROBE = 8192  # bytes looked at to tell binary from text
SEARCH_BLOCK = 1 << 20  # bytes search_files reads at a time; longer lines are searched in pieces
SKIP_CHARS = 1 << 16  # characters read at a time while skipping the rest of a cut line

# What the model must know about the pattern syntax (in the description and in errors).
RE2_SYNTAX = (
    "RE2 syntax: like Python's re, but without backreferences (\\1), lookahead or lookbehind "
    "((?=…), (?!…), (?<=…), (?<!…)), possessive or atomic groups, or \\Z (use $)"
)


def is_binary(path: Path) -> bool:
    """A NUL byte near the start marks a file as binary (what git and grep do too)."""
    with path.open("rb") as file:
        return b"\0" in file.read(BINARY_PROBE)


def _cap_line(line: str, cap: int) -> str:
    return line if len(line) <= cap else line[:cap] + " … [line truncated]"


def _stopped(budget: Budget) -> str:
    return f"stopped after {budget.seconds:g}s"


def _lines(file: IO[str], cap: int) -> Iterator[str]:
    """The lines of a text file without their newline, each cut to at most ``cap + 1``
    characters (so a longer line shows as longer than ``cap``); the rest of a cut line is
    skipped without ever holding it whole."""
    while line := file.readline(cap + 1):
        if line.endswith("\n"):
            yield line[:-1]
            continue
        if len(line) > cap:
            while (rest := file.readline(SKIP_CHARS)) and not rest.endswith("\n"):
                pass
        yield line


class ReadFile(BuiltinTool):
    spec = ToolSpec(
        name="read_file",
        description=(
            "Read a text file from the working directory. Returns numbered lines "
            f"(1-based). Reads at most {DEFAULT_READ_LIMIT} lines unless `limit` says otherwise; "
            "use `offset` (the first line number to return) to continue."
        ),
        parameters=object_schema(
            {
                "path": {
                    "type": "string",
                    "description": "File path, relative to the working directory.",
                },
                "offset": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "First line to return (1-based).",
                },
                "limit": {"type": "integer", "minimum": 1, "description": "Most lines to return."},
            },
            required=("path",),
        ),
    )
    concurrency_safe = True

    async def execute(self, input: dict[str, Any], ctx: ToolContext) -> ToolOutcome:
        root = sandbox_root(ctx.cwd)
        path = resolve(root, input["path"])
        offset = input.get("offset", 1)
        limit = input.get("limit", DEFAULT_READ_LIMIT)
        return ToolOutcome(await run_bounded(self._read, root, path, offset, limit))

    @staticmethod
    def _read(budget: Budget, root: Path, path: Path, offset: int, limit: int) -> str:
        """Lines ``offset…offset+limit-1``, ending early, with the offset that continues, before
        the line that would take the text past OUTPUT_CAP or when the budget runs out."""
        shown = display(root, path)
        if path.is_dir():
            raise ToolFailure(f"{shown} is a directory; use list_files to see its entries")
        if not path.exists():
            raise ToolFailure(f"{shown} does not exist")
        if is_binary(path):
            raise ToolFailure(f"{shown} is a binary file")
        lines: list[str] = []
        size = -1  # characters of the text so far (lines joined by newlines)
        next_line = None
        line_count = 0
        with path.open(encoding="utf-8", errors="replace") as file:
            for line_count, line in enumerate(_lines(file, LINE_CAP), start=1):
                if budget.exhausted():
                    next_line = line_count
                    break
                if line_count < offset:
                    continue
                numbered = f"{line_count:>6}\t{_cap_line(line, LINE_CAP)}"
                if len(lines) == limit or size + 1 + len(numbered) > OUTPUT_CAP:
                    next_line = line_count
                    break
                lines.append(numbered)
                size += 1 + len(numbered)
        if line_count == 0 and offset == 1:
            return f"({shown} is empty)"
        if not lines:
            if next_line is not None:  # the budget ran out on the way to the offset
                raise ToolFailure(
                    f"{_stopped(budget)} at line {next_line:,} of {shown}, before offset {offset}"
                )
            raise ToolFailure(f"offset {offset} is past the end of {shown} ({line_count} lines)")
        text = "\n".join(lines)
        if next_line is not None:
            why = _stopped(budget) if budget.exhausted() else "more lines follow"
            text += f"\n… [{why}; continue with offset={next_line}]"
        return text


class ListFiles(BuiltinTool):
    spec = ToolSpec(
        name="list_files",
        description=(
            "List a directory of the working directory (directories end with '/'). With `glob` "
            "(e.g. '**/*.py') list every matching path below it instead."
        ),
        parameters=object_schema(
            {
                "path": {"type": "string", "description": "Directory to list; default '.'."},
                "glob": {
                    "type": "string",
                    "description": "Glob relative to `path`; '**' spans directories.",
                },
            },
            required=(),
        ),
    )
    concurrency_safe = True

    async def execute(self, input: dict[str, Any], ctx: ToolContext) -> ToolOutcome:
        root = sandbox_root(ctx.cwd)
        top = resolve(root, input.get("path", "."))
        pattern = glob_regex(input["glob"]) if "glob" in input else None
        return ToolOutcome(await run_bounded(self._list, root, top, pattern))

    @staticmethod
    def _list(budget: Budget, root: Path, top: Path, pattern: Any) -> str:
        """The first MAX_ENTRIES entries and how many more there are; a walk for a glob stops
        with a note when the budget runs out."""
        if not top.is_dir():
            raise ToolFailure(f"{display(root, top)} is not a directory")
        if pattern is None:
            entries: Iterator[tuple[Path, bool]] = (
                (Path(entry.path), entry.is_dir())
                for entry in sorted(os.scandir(top), key=lambda entry: entry.name)
                if not entry.is_symlink() or is_inside(root, os.path.realpath(entry.path))
            )
        else:
            entries = (
                (path, is_dir)
                for path, is_dir in walk_entries(root, top, budget)
                if pattern.match(path.relative_to(top).as_posix())
            )
        lines: list[str] = []
        more = 0
        for path, is_dir in entries:
            if len(lines) < MAX_ENTRIES:
                lines.append(display(root, path) + ("/" if is_dir else ""))
            else:
                more += 1
        notes = []
        if more:
            notes.append(f"… [truncated: {more:,} more entries]")
        if pattern is not None and budget.exhausted():
            notes.append(f"… [{_stopped(budget)}; the listing is incomplete: narrow `path`]")
        if not lines and not notes:
            return "(no matching entries)" if pattern else f"({display(root, top)} is empty)"
        listed = [truncate("\n".join(lines))] if lines else []
        return "\n".join(listed + notes)


def compile_search(pattern: str) -> Any:
    """The RE2 regex search_files matches lines with; ToolFailure naming the problem when the
    pattern is not valid RE2 syntax.

    ``never_nl`` keeps every match inside one line, and multi-line mode makes ``^`` and ``$``
    match at each line's start and end, so a whole block of a file is matched in one call and
    means the same as matching it line by line.
    """
    options = re2.Options()
    options.never_nl = True
    options.log_errors = False
    try:
        return re2.compile(f"(?m){pattern}", options)
    except re2.error as exc:
        problem = re2_message(exc).replace(f"(?m){pattern}", pattern)
    except UnicodeEncodeError:
        problem = "not valid Unicode"
    raise ToolFailure(
        f"invalid regular expression {pattern!r}: {problem}. search_files uses {RE2_SYNTAX}"
    )


def _pieces(file: IO[bytes], budget: Budget) -> Iterator[bytes]:
    """The file in pieces that end after a newline (or at its end), about SEARCH_BLOCK bytes
    each; a line longer than that is cut into pieces of its own. CRLF becomes LF. Stops when
    the budget runs out."""
    carry = b""
    while not budget.exhausted():
        block = file.read(SEARCH_BLOCK)
        if not block:
            if carry:
                yield carry.replace(b"\r\n", b"\n")
            return
        data = carry + block
        cut = data.rfind(b"\n") + 1 or len(data)
        carry = data[cut:]
        yield data[:cut].replace(b"\r\n", b"\n")


def _line_text(piece: bytes, begin: int, end: int) -> str:
    """The line ``piece[begin:end]`` as text, cut to MATCH_LINE_CAP characters; decodes no more
    than the bytes those characters can take (at most 4 each in UTF-8)."""
    window = piece[begin : min(end, begin + 4 * (MATCH_LINE_CAP + 1))]
    return _cap_line(window.decode("utf-8", errors="replace"), MATCH_LINE_CAP)


def matching_lines(path: Path, regex: Any, budget: Budget) -> Iterator[tuple[int, str]]:
    """``(line number, text)`` of every line of ``path`` that ``regex`` (from
    ``compile_search``) matches, in order, each line once. A line longer than SEARCH_BLOCK is
    searched in pieces, so a match across a cut in such a line can be missed."""
    line = 1  # the number of the line the current piece starts in
    reported = 0
    with path.open("rb") as file:
        for piece in _pieces(file, budget):
            pos, counted, at = 0, 0, line
            while (match := regex.search(piece, pos)) is not None:
                start = match.start()
                if start == len(piece) and piece.endswith(b"\n"):
                    break  # the empty start of the next line, which the next piece holds
                at += piece.count(b"\n", counted, start)
                counted = start
                begin = piece.rfind(b"\n", 0, start) + 1
                end = piece.find(b"\n", start)
                if end == -1:
                    end = len(piece)
                if at != reported:
                    reported = at
                    yield at, _line_text(piece, begin, end)
                pos = end + 1
                if pos > len(piece):
                    break
            line += piece.count(b"\n")


class SearchFiles(BuiltinTool):
    spec = ToolSpec(
        name="search_files",
        description=(
            "Search text files for a regular expression, line by line. Returns matching lines "
            "as 'file:line: text'. Binary files are skipped. Patterns use "
            f"{RE2_SYNTAX}; `^` and `$` match at the start and end of each line."
        ),
        parameters=object_schema(
            {
                "pattern": {"type": "string", "description": "Regular expression (RE2 syntax)."},
                "path": {
                    "type": "string",
                    "description": "File or directory to search; default '.'.",
                },
            },
            required=("pattern",),
        ),
    )
    concurrency_safe = True

    async def execute(self, input: dict[str, Any], ctx: ToolContext) -> ToolOutcome:
        root = sandbox_root(ctx.cwd)
        target = resolve(root, input.get("path", "."))
        return ToolOutcome(await run_bounded(self._search, root, target, input["pattern"]))

    @staticmethod
    def _search(budget: Budget, root: Path, target: Path, pattern: str) -> str:
        """At most MAX_MATCHES matching lines; a note says when the budget stopped the search."""
        regex = compile_search(pattern)
        if not target.exists():
            raise ToolFailure(f"{display(root, target)} does not exist")
        files = [target] if target.is_file() else walk_files(root, target, budget)
        matches: list[str] = []
        searched = 0
        note = None
        for path in files:
            if budget.exhausted():
                break
            if is_binary(path):
                continue
            searched += 1
            shown = display(root, path)
            for number, text in matching_lines(path, regex, budget):
                matches.append(f"{shown}:{number}: {text}")
                if len(matches) == MAX_MATCHES:
                    note = f"… [stopped after {MAX_MATCHES} matches; narrow the search]"
                    break
            if note:
                break
        if note is None and budget.exhausted():
            note = (
                f"… [{_stopped(budget)}, {searched:,} files searched; the results are "
                "incomplete: narrow `path` or the pattern]"
            )
        text = truncate("\n".join(matches)) if matches else f"no matches for {pattern!r}"
        return f"{text}\n{note}" if note else text

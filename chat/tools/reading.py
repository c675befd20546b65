"""The read-only built-ins: read_file, list_files, search_files (all concurrency-safe)."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from typing import Any

from chat.runtime.types import ToolContext, ToolOutcome, ToolSpec
from chat.tools.base import BuiltinTool, ToolFailure, object_schema, truncate
from chat.tools.sandbox import (
    display,
    glob_regex,
    is_inside,
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


def is_binary(path: Path) -> bool:
    """A NUL byte near the start marks a file as binary (what git and grep do too)."""
    with path.open("rb") as file:
        return b"\0" in file.read(BINARY_PROBE)


def _cap_line(line: str, cap: int) -> str:
    return line if len(line) <= cap else line[:cap] + " … [line truncated]"


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
        return ToolOutcome(await asyncio.to_thread(self._read, root, path, offset, limit))

    @staticmethod
    def _read(root: Path, path: Path, offset: int, limit: int) -> str:
        shown = display(root, path)
        if path.is_dir():
            raise ToolFailure(f"{shown} is a directory; use list_files to see its entries")
        if not path.exists():
            raise ToolFailure(f"{shown} does not exist")
        if is_binary(path):
            raise ToolFailure(f"{shown} is a binary file")
        lines: list[str] = []
        next_line = None
        line_count = 0
        with path.open(encoding="utf-8", errors="replace") as file:
            for line_count, line in enumerate(file, start=1):
                if line_count < offset:
                    continue
                if len(lines) == limit:
                    next_line = line_count
                    break
                numbered = _cap_line(line.rstrip("\n"), LINE_CAP)
                lines.append(f"{line_count:>6}\t{numbered}")
        if line_count == 0 and offset == 1:
            return f"({shown} is empty)"
        if not lines:
            raise ToolFailure(f"offset {offset} is past the end of {shown} ({line_count} lines)")
        text = "\n".join(lines)
        if next_line is not None:
            text += f"\n… [more lines follow; continue with offset={next_line}]"
        return truncate(text)


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
        return ToolOutcome(await asyncio.to_thread(self._list, root, top, pattern))

    @staticmethod
    def _list(root: Path, top: Path, pattern: re.Pattern[str] | None) -> str:
        if not top.is_dir():
            raise ToolFailure(f"{display(root, top)} is not a directory")
        if pattern is None:
            entries = [
                (Path(entry.path), entry.is_dir())
                for entry in sorted(os.scandir(top), key=lambda entry: entry.name)
                if not entry.is_symlink() or is_inside(root, os.path.realpath(entry.path))
            ]
        else:
            entries = [
                (path, is_dir)
                for path, is_dir in walk_entries(root, top)
                if pattern.match(path.relative_to(top).as_posix())
            ]
        if not entries:
            return "(no matching entries)" if pattern else f"({display(root, top)} is empty)"
        lines = [display(root, path) + ("/" if is_dir else "") for path, is_dir in entries]
        text = "\n".join(lines[:MAX_ENTRIES])
        if len(lines) > MAX_ENTRIES:
            text += f"\n… [truncated: {len(lines) - MAX_ENTRIES:,} more entries]"
        return truncate(text)


class SearchFiles(BuiltinTool):
    spec = ToolSpec(
        name="search_files",
        description=(
            "Search text files for a regular expression (Python syntax). Returns matching lines "
            "as 'file:line: text'. Binary files are skipped."
        ),
        parameters=object_schema(
            {
                "pattern": {"type": "string", "description": "Regular expression to search for."},
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
        try:
            pattern = re.compile(input["pattern"])
        except re.error as exc:
            raise ToolFailure(f"invalid regular expression {input['pattern']!r}: {exc}") from exc
        root = sandbox_root(ctx.cwd)
        target = resolve(root, input.get("path", "."))
        return ToolOutcome(await asyncio.to_thread(self._search, root, target, pattern))

    @staticmethod
    def _search(root: Path, target: Path, pattern: re.Pattern[str]) -> str:
        if not target.exists():
            raise ToolFailure(f"{display(root, target)} does not exist")
        files = [target] if target.is_file() else walk_files(root, target)
        matches: list[str] = []
        for path in files:
            if is_binary(path):
                continue
            with path.open(encoding="utf-8", errors="replace") as file:
                for number, line in enumerate(file, start=1):
                    if pattern.search(line):
                        text = _cap_line(line.rstrip("\n"), MATCH_LINE_CAP)
                        matches.append(f"{display(root, path)}:{number}: {text}")
                        if len(matches) == MAX_MATCHES:
                            note = f"… [stopped after {MAX_MATCHES} matches; narrow the search]"
                            return truncate("\n".join([*matches, note]))
        if not matches:
            return f"no matches for {pattern.pattern!r}"
        return truncate("\n".join(matches))

"""The built-ins that change files: write_file, edit_file (never concurrency-safe)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from chat.runtime.types import ToolContext, ToolOutcome, ToolSpec
from chat.tools.base import BuiltinTool, ToolFailure, object_schema
from chat.tools.reading import BINARY_PROBE
from chat.tools.sandbox import display, resolve, sandbox_root

# The biggest file edit_file works on: it reads, decodes, counts and replaces the whole text,
# which for a huge file would hold the interpreter (and the server with it) for seconds.
EDIT_SIZE_CAP = 16 * 1024 * 1024


def _write(path: Path, data: bytes, *, exclusive: bool) -> None:
    # O_NOFOLLOW: a symlink planted at the resolved path after the sandbox check is not followed.
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | (os.O_EXCL if exclusive else 0)
    fd = os.open(path, flags, 0o644)
    with os.fdopen(fd, "wb") as file:
        file.write(data)


class WriteFile(BuiltinTool):
    spec = ToolSpec(
        name="write_file",
        description=(
            "Create a file in the working directory with the given content (parent directories "
            "are created). An existing file is only replaced when `overwrite` is true."
        ),
        parameters=object_schema(
            {
                "path": {
                    "type": "string",
                    "description": "File path, relative to the working directory.",
                },
                "content": {"type": "string", "description": "The complete new content."},
                "overwrite": {"type": "boolean", "description": "Replace an existing file."},
            },
            required=("path", "content"),
        ),
    )
    concurrency_safe = False

    async def execute(self, input: dict[str, Any], ctx: ToolContext) -> ToolOutcome:
        root = sandbox_root(ctx.cwd)
        path = resolve(root, input["path"])
        overwrite = input.get("overwrite", False)
        return ToolOutcome(
            await asyncio.to_thread(self._write_file, root, path, input["content"], overwrite)
        )

    @staticmethod
    def _write_file(root: Path, path: Path, content: str, overwrite: bool) -> str:
        shown = display(root, path)
        if path.is_dir():
            raise ToolFailure(f"{shown} is a directory")
        existed = path.exists()
        if existed and not overwrite:
            raise ToolFailure(f"{shown} already exists; pass overwrite: true to replace it")
        path.parent.mkdir(parents=True, exist_ok=True)
        data = content.encode("utf-8")
        try:
            _write(path, data, exclusive=not overwrite)
        except FileExistsError as exc:  # created by someone else since the check above
            raise ToolFailure(
                f"{shown} already exists; pass overwrite: true to replace it"
            ) from exc
        return f"{'overwrote' if existed else 'created'} {shown} ({len(data):,} bytes)"


class EditFile(BuiltinTool):
    spec = ToolSpec(
        name="edit_file",
        description=(
            "Replace text in a file of the working directory. `oldString` must occur exactly once "
            "(include surrounding lines to make it unique) unless `replaceAll` is true. Works on "
            "files up to 16 MiB."
        ),
        parameters=object_schema(
            {
                "path": {
                    "type": "string",
                    "description": "File path, relative to the working directory.",
                },
                "oldString": {"type": "string", "description": "The exact text to replace."},
                "newString": {"type": "string", "description": "The text to put in its place."},
                "replaceAll": {"type": "boolean", "description": "Replace every occurrence."},
            },
            required=("path", "oldString", "newString"),
        ),
    )
    concurrency_safe = False

    async def execute(self, input: dict[str, Any], ctx: ToolContext) -> ToolOutcome:
        if input["oldString"] == "":
            raise ToolFailure("oldString must not be empty; use write_file to create a file")
        if input["oldString"] == input["newString"]:
            raise ToolFailure("oldString and newString are identical; nothing to change")
        root = sandbox_root(ctx.cwd)
        path = resolve(root, input["path"])
        return ToolOutcome(
            await asyncio.to_thread(
                self._edit,
                root,
                path,
                input["oldString"],
                input["newString"],
                input.get("replaceAll", False),
            )
        )

    @staticmethod
    def _edit(root: Path, path: Path, old: str, new: str, replace_all: bool) -> str:
        shown = display(root, path)
        if not path.is_file():
            raise ToolFailure(
                f"{shown} does not exist" if not path.exists() else f"{shown} is not a file"
            )
        size = path.stat().st_size
        if size > EDIT_SIZE_CAP:
            raise ToolFailure(
                f"{shown} is {size:,} bytes; edit_file works on files up to {EDIT_SIZE_CAP:,} bytes"
            )
        raw = path.read_bytes()
        if b"\0" in raw[:BINARY_PROBE]:
            raise ToolFailure(f"{shown} is a binary file")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ToolFailure(f"{shown} is not UTF-8 text") from exc
        count = text.count(old)
        if count == 0:
            raise ToolFailure(f"oldString not found in {shown}")
        if count > 1 and not replace_all:
            raise ToolFailure(
                f"oldString occurs {count} times in {shown}; include more surrounding text to "
                "make it unique, or pass replaceAll: true"
            )
        _write(path, text.replace(old, new).encode("utf-8"), exclusive=False)
        return f"replaced {count} occurrence{'s' if count > 1 else ''} in {shown}"

"""The sandbox of the built-in tools: every path stays inside the conversation's working directory.

A path is resolved with ``realpath`` (so ``..`` and every symlink on the way are followed) and
refused unless the result is the working directory or inside it. Walks never descend into
symlinked directories and drop entries whose real location is outside the working directory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import re2

if TYPE_CHECKING:
    from chat.tools.base import Budget

# Directories a recursive walk skips: version-control internals are never what a search means.
SKIPPED_DIRS = frozenset({".git"})


class SandboxError(Exception):
    """A path the tools may not touch; the message is shown to the model as is."""


def sandbox_root(cwd: str) -> Path:
    """The real path of the working directory; SandboxError when it is not a directory."""
    root = Path(os.path.realpath(cwd))
    if not root.is_dir():
        raise SandboxError(f"the working directory {cwd} does not exist")
    return root


def is_inside(root: Path, real: str | Path) -> bool:
    """Whether the already-resolved path ``real`` is ``root`` or below it."""
    return os.path.commonpath([root, real]) == str(root)


def resolve(root: Path, path: str) -> Path:
    """Resolve the user-given ``path`` against ``root``; SandboxError when it escapes.

    Absolute paths are accepted only when they resolve inside the working directory.
    """
    if "\0" in path:
        raise SandboxError("path contains a NUL character")
    real = os.path.realpath(os.path.join(root, path))
    if not is_inside(root, real):
        raise SandboxError(f"{path} is outside the working directory")
    return Path(real)


def display(root: Path, real: Path) -> str:
    """The path as the model should write it: relative to the working directory."""
    relative = os.path.relpath(real, root)
    return "." if relative == "." else relative


def walk_files(root: Path, top: Path, budget: Budget) -> Iterator[Path]:
    """Every regular file below ``top`` (sorted, depth first) whose real path stays inside.

    Symlinked directories are not descended into (no loops, no escapes); a symlinked file is
    yielded only when its target is inside the working directory. The walk ends early once
    ``budget`` is exhausted (the caller tells by asking it).
    """
    for path, is_dir in walk_entries(root, top, budget):
        if not is_dir and path.is_file():
            yield path


def walk_entries(root: Path, top: Path, budget: Budget) -> Iterator[tuple[Path, bool]]:
    """Every entry below ``top`` as ``(path, is_dir)``, with the same rules as ``walk_files``."""
    for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS)
        for name in sorted(dirnames + filenames):
            if budget.exhausted():
                return
            path = Path(dirpath, name)
            if path.is_symlink() and not is_inside(root, os.path.realpath(path)):
                continue
            yield path, path.is_dir()


def glob_regex(pattern: str) -> Any:
    """Compile a glob over ``/``-separated relative paths into an RE2 regex (``.match``).

    ``**`` spans any number of directories, ``*`` and ``?`` stay within one name, ``[...]`` is
    a character class. RE2 matches in time linear in the path, whatever the glob: Python's
    ``re`` would backtrack without end on globs such as ``**/**/**/**/**/**/x``. Patterns that
    could point outside (absolute, ``..``) raise SandboxError.
    """
    if pattern.startswith("/") or ".." in pattern.split("/"):
        raise SandboxError(f"glob {pattern} may not be absolute or contain '..'")
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
            continue
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if char == "*":
            out.append("[^/]*")
        elif char == "?":
            out.append("[^/]")
        elif char == "[" and (end := pattern.find("]", i + 2)) != -1:
            body = pattern[i + 1 : end]
            negated = body.startswith("!")
            members = "".join(c if c == "-" else re2.escape(c) for c in body[negated:])
            out.append(("[^" if negated else "[") + members + "]")
            i = end + 1
            continue
        else:
            out.append(re2.escape(char))
        i += 1
    options = re2.Options()
    options.log_errors = False
    try:
        return re2.compile("".join(out) + r"\z", options)
    except re2.error as exc:  # e.g. a class range backwards: [z-a]
        raise SandboxError(f"invalid glob {pattern}: {re2_message(exc)}") from exc


def re2_message(exc: Exception) -> str:
    """The text of an ``re2.error`` (the binding keeps it as bytes)."""
    message = exc.args[0] if exc.args else str(exc)
    return message.decode("utf-8", "replace") if isinstance(message, bytes) else str(message)

"""System prompt templates: variables and conditionals, checked when saved, resolved once.

A template is text with two kinds of markup::

    You are a coding agent on {{hostname}} ({{os}}), today is {{date}}.
    Your working directory is {{cwd}}.
    [if git_branch]It is a git checkout on branch {{git_branch}}:
    {{git_status}}[else]It is not a git checkout.[endif]
    [if file:AGENTS.md]Project notes:
    {{file:AGENTS.md}}[endif]

- ``{{name}}`` is replaced by a variable (``VARIABLES``); ``{{file:<path>}}`` by the contents
  of that file in the conversation's working directory (a relative path that stays inside it,
  at most ``FILE_MAX_CHARS`` characters; a missing or unreadable file is empty).
- ``[if name]…[else]…[endif]`` keeps its first part when the variable is not empty (for
  ``file:<path>``: when the file has content), else the ``[else]`` part (optional); ``[if not
  name]`` negates. Blocks nest.

``parse`` checks a template completely — an unknown variable, an ``[else]`` or ``[endif]``
without its ``[if]``, an ``[if]`` never closed, a file path that leaves the directory — and
raises ``TemplateError`` naming the problem and its line, so a bad template is refused when it
is saved (or at start-up for the deployment's), never in a turn. ``render`` then cannot fail:
it only reads values, which ``Context`` computes lazily (git runs only when a template asks).

Pure Python (no Django): the config loader checks the deployment template with it.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

TEMPLATE_MAX_CHARS = 20_000
FILE_MAX_CHARS = 32_000
GIT_STATUS_MAX_CHARS = 4_000
GIT_TIMEOUT = 3.0  # seconds

VARIABLES = {
    "date": "today's date, YYYY-MM-DD (the server's time zone)",
    "time": "the time, HH:MM and the UTC offset",
    "weekday": "the day of the week",
    "os": "the server's operating system and release",
    "hostname": "the server's host name",
    "cwd": "the conversation's working directory (absolute)",
    "model": "the conversation's model, <credential>/<model>",
    "conversation_id": "the conversation's id",
    "user": "the conversation owner's user name",
    "git_branch": "the working directory's git branch (empty outside a git checkout)",
    "git_status": "`git status --short` of the working directory (empty when clean)",
}
FILE_PREFIX = "file:"

_TAG = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}|\[(if|else|endif)(?:\s+([^\[\]]*?))?\s*\]")


class TemplateError(ValueError):
    """A template that cannot be used; ``str()`` names the problem and its line."""

    def __init__(self, message: str, line: int | None = None):
        super().__init__(f"line {line}: {message}" if line is not None else message)
        self.problem = message
        self.line = line


# ---------------------------------------------------------------- the parsed template


@dataclass
class _Var:
    name: str


@dataclass
class _If:
    name: str
    negate: bool
    then: list = field(default_factory=list)
    otherwise: list = field(default_factory=list)


Node = str | _Var | _If


@dataclass
class Template:
    source: str
    nodes: list[Node]

    def render(self, context: Context) -> str:
        return _render(self.nodes, context).strip()


def parse(source: str) -> Template:
    """Check and parse a template; TemplateError for the first problem found."""
    if len(source) > TEMPLATE_MAX_CHARS:
        raise TemplateError(f"the template is longer than {TEMPLATE_MAX_CHARS:,} characters")
    if "\0" in source:
        raise TemplateError("the template contains a NUL character")
    root: list[Node] = []
    # Open [if] blocks: (block, line it opened on, whether [else] was seen).
    stack: list[tuple[_If, int, bool]] = []

    def target() -> list[Node]:
        if not stack:
            return root
        block, _, in_else = stack[-1]
        return block.otherwise if in_else else block.then

    position = 0
    for match in _TAG.finditer(source):
        line = source.count("\n", 0, match.start()) + 1
        if match.start() > position:
            target().append(source[position : match.start()])
        position = match.end()
        variable, keyword, argument = match.group(1), match.group(2), match.group(3)
        if variable is not None:
            target().append(_Var(_check_name(variable, line)))
        elif keyword == "if":
            words = (argument or "").split()
            negate = bool(words) and words[0] == "not"
            name = " ".join(words[1:] if negate else words)
            block = _If(_check_name(name, line, what="[if]"), negate)
            target().append(block)
            stack.append((block, line, False))
        elif keyword == "else":
            if argument:
                raise TemplateError("[else] takes nothing after it", line)
            if not stack or stack[-1][2]:
                raise TemplateError("[else] without an open [if]", line)
            block, opened, _ = stack.pop()
            stack.append((block, opened, True))
        else:
            if argument:
                raise TemplateError("[endif] takes nothing after it", line)
            if not stack:
                raise TemplateError("[endif] without an open [if]", line)
            stack.pop()
    if stack:
        raise TemplateError("[if] is never closed with [endif]", stack[-1][1])
    if position < len(source):
        target().append(source[position:])
    return Template(source, root)


def _check_name(name: str, line: int, what: str = "{{…}}") -> str:
    if not name:
        raise TemplateError(f"{what} names no variable", line)
    if name.startswith(FILE_PREFIX):
        path = name[len(FILE_PREFIX) :].strip()
        check_file_path(path, line)
        return FILE_PREFIX + path
    if name not in VARIABLES:
        known = ", ".join([*VARIABLES, "file:<path>"])
        raise TemplateError(f"undefined variable {name!r} (known: {known})", line)
    return name


def check_file_path(path: str, line: int | None = None) -> None:
    """A file path of a template: relative, inside the working directory (no ``..``)."""
    if not path:
        raise TemplateError("file: names no path", line)
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts or path.startswith("~"):
        raise TemplateError(
            f"file:{path}: the path must be relative and stay inside the working directory",
            line,
        )


def _render(nodes: list[Node], context: Context) -> str:
    out = []
    for node in nodes:
        if isinstance(node, str):
            out.append(node)
        elif isinstance(node, _Var):
            out.append(context.value(node.name))
        else:
            truthy = bool(context.value(node.name).strip())
            out.append(_render(node.then if truthy != node.negate else node.otherwise, context))
    return "".join(out)


# ---------------------------------------------------------------- values


class Context:
    """The values a template reads, computed on first use and kept.

    ``read_file(path)`` returns a file's text inside the working directory, None when it is
    missing, unreadable or outside (the caller's sandbox decides).
    """

    def __init__(
        self,
        *,
        cwd: str,
        model: str,
        conversation_id: str,
        user: str,
        read_file: Callable[[str], str | None],
        workspace: str | None = None,
        now: dt.datetime | None = None,
    ) -> None:
        """``workspace``: the owner's workspace; git never looks for a repository above it."""
        self.cwd, self.model, self.conversation_id, self.user = cwd, model, conversation_id, user
        self.workspace = workspace
        self.read_file = read_file
        self.now = now or dt.datetime.now().astimezone()
        self._values: dict[str, str] = {}

    def value(self, name: str) -> str:
        if name not in self._values:
            self._values[name] = self._compute(name)
        return self._values[name]

    def _compute(self, name: str) -> str:
        if name.startswith(FILE_PREFIX):
            text = self.read_file(name[len(FILE_PREFIX) :]) or ""
            if len(text) > FILE_MAX_CHARS:
                text = text[:FILE_MAX_CHARS] + f"\n… [truncated at {FILE_MAX_CHARS:,} characters]"
            return text
        simple = {
            "date": lambda: self.now.strftime("%Y-%m-%d"),
            "time": lambda: self.now.strftime("%H:%M %z"),
            "weekday": lambda: self.now.strftime("%A"),
            "os": lambda: f"{platform.system()} {platform.release()}".strip(),
            "hostname": socket.gethostname,
            "cwd": lambda: self.cwd,
            "model": lambda: self.model,
            "conversation_id": lambda: self.conversation_id,
            "user": lambda: self.user,
            "git_branch": lambda: self._git("branch", "--show-current"),
            "git_status": lambda: self._git("status", "--short")[:GIT_STATUS_MAX_CHARS],
        }
        return simple[name]()

    def _git(self, *args: str) -> str:
        """A git command's output in the working directory; empty outside a checkout (one
        found inside the workspace) or when git fails."""
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "HOME": self.cwd}
        if self.workspace:
            env["GIT_CEILING_DIRECTORIES"] = os.path.dirname(self.workspace.rstrip("/"))
        return _run_git(self.cwd, env, args)


def _run_git(cwd: str, env: dict[str, str], args: tuple[str, ...]) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", cwd, *args],
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT,
            env=env,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.rstrip() if done.returncode == 0 else ""

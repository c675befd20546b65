"""Where agents work: one workspace per user, and a conversation's directory inside its owner's.

Every user has their own root, ``<workspace root>/<user id>/``; a conversation's ``cwd`` is a
path relative to its owner's root (or absolute inside it), and the built-in tools can reach
nothing outside the conversation's directory. A cwd that resolves outside the owner's root —
by ``..``, an absolute path or a symlink — is refused, so one user's agent can never work in
another user's files.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings

from chat.config import get_config
from chat.errors import InvalidInput

NAME_MAX = 255  # bytes in one directory name (Linux)


def workspace_root() -> Path:
    """The deployment's workspace root: ``[tools] workspace_root`` or ``var/workspace``."""
    config = get_config()
    root = config.tools.workspace_root or Path(settings.DISPATCH_WORKSPACE_ROOT)
    if not root.is_absolute():
        root = (Path(config.source).parent if config.source else Path(settings.BASE_DIR)) / root
    return root.resolve()


def user_root(user_id: int) -> Path:
    """The workspace of one user: ``<workspace root>/<user id>``."""
    return workspace_root() / str(int(user_id))


def conversation_dir(*, owner_id: int, cwd: str) -> Path:
    """A conversation's working directory: ``cwd`` resolved inside its owner's workspace.

    InvalidInput (field ``cwd``) when it would lead outside.
    """
    root = user_root(owner_id)
    if any(len(part.encode()) > NAME_MAX for part in Path(cwd).parts):
        raise InvalidInput(f"a directory name is longer than {NAME_MAX} bytes", field="cwd")
    try:
        path = (root / cwd).resolve() if cwd else root
    except (OSError, RuntimeError, ValueError):  # a symlink loop, an unencodable name
        raise InvalidInput("is not a usable directory", field="cwd") from None
    if path != root and root not in path.parents:
        raise InvalidInput("must be a directory inside your workspace", field="cwd")
    return path


def conversation_dir_ready(*, owner_id: int, cwd: str) -> str:
    """The conversation's directory, created when missing (the tools never create it)."""
    path = conversation_dir(owner_id=owner_id, cwd=cwd)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InvalidInput(f"cannot be created: {exc.strerror}", field="cwd") from None
    return str(path)

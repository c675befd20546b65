"""``manage.py dispatch_split_workspace``: move a shared workspace into per-user workspaces.

Before per-user workspaces (docs/tools.md), every conversation's ``cwd`` was a directory of one
shared workspace root. Run this once, with the server stopped, when upgrading a deployment that
has such data; a new deployment needs nothing. What it does:

1. every top-level entry of the root that is not already a user's workspace (a directory named
   by a user id) is moved into ``<root>/.dispatch-shared/`` (renames, on one file system);
2. each entry goes to the users whose conversations used it: a conversation with cwd
   ``proj/sub`` used ``proj``; one with an empty cwd used the whole root, so the entries no
   cwd names go to those users. An entry of one user is moved to ``<root>/<user id>/``; an
   entry several users' agents shared is copied to each of them (they all could read it
   already; from now on each copy is private);
3. an absolute cwd inside the root becomes the same path relative to its owner's workspace.

An entry whose target already exists, and an entry no conversation used, stays in
``.dispatch-shared/`` and is listed: the operator decides. When it is done a marker file
``.dispatch-split`` is written and the command refuses to run again.
"""

from __future__ import annotations

import shutil
from collections import defaultdict
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from chat.models import Conversation
from chat.services.workspace import workspace_root

SHARED = ".dispatch-shared"
MARKER = ".dispatch-split"
ROOT_USERS = ""  # the users whose conversations worked in the root itself


class Command(BaseCommand):
    help = "Move a shared workspace (before per-user workspaces) into each user's workspace, once."

    def add_arguments(self, parser):
        parser.add_argument(
            "--dry-run", action="store_true", help="say what would be moved, change nothing"
        )

    def handle(self, *args, dry_run: bool, **options):
        root = workspace_root()
        if (root / MARKER).exists():
            raise CommandError(f"{root} was already split (remove {MARKER} to run again)")
        if not root.is_dir():
            self.stdout.write(f"{root} does not exist: nothing to move")
            return
        for line in split_workspace(root, dry_run=dry_run):
            self.stdout.write(line)


def split_workspace(root: Path, *, dry_run: bool = False) -> list[str]:
    """Do the split (see the module's docstring); the lines of its report."""
    user_ids = {str(pk) for pk in get_user_model().objects.values_list("pk", flat=True)}
    users_of: dict[str, set[str]] = defaultdict(set)  # top-level name → owner ids
    relative: list[tuple[str, str]] = []  # (conversation id, its cwd made relative)
    for pk, owner_id, cwd in Conversation.objects.values_list("pk", "owner_id", "cwd"):
        path = Path(cwd)
        if path.is_absolute():
            try:
                path = path.relative_to(root)
            except ValueError:
                continue  # outside the root: the server refuses it anyway
            relative.append((pk, str(path) if str(path) != "." else ""))
        top = path.parts[0] if path.parts else ROOT_USERS
        users_of[top].add(str(owner_id))
    entries = sorted(
        p.name
        for p in root.iterdir()
        if p.name not in (SHARED, MARKER) and not (p.is_dir() and p.name in user_ids)
    )
    report = [f"workspace root: {root}"]
    if dry_run:
        report.append("dry run: nothing is changed")
    shared = root / SHARED
    if not dry_run:
        shared.mkdir(exist_ok=True)
        for name in entries:
            (root / name).rename(shared / name)
    for name in entries:
        owners = sorted(users_of.get(name) or users_of.get(ROOT_USERS) or (), key=int)
        if not owners:
            report.append(f"kept {SHARED}/{name}: no conversation used it")
            continue
        for n, owner in enumerate(owners):
            target = root / owner / name
            if target.exists():
                report.append(f"kept {SHARED}/{name}: {owner}/{name} exists already")
                break
            last = n == len(owners) - 1
            report.append(f"{'moved' if last else 'copied'} {name} → {owner}/{name}")
            if dry_run:
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            source = shared / name
            if last:
                source.rename(target)
            elif source.is_dir() and not source.is_symlink():
                shutil.copytree(source, target, symlinks=True)
            else:
                shutil.copy2(source, target, follow_symlinks=False)
    for pk, cwd in relative:
        report.append(f"conversation {pk}: cwd is now {cwd or '(its workspace)'}")
        if not dry_run:
            Conversation.objects.filter(pk=pk).update(cwd=cwd)
    if not dry_run:
        if not any(shared.iterdir()):
            shared.rmdir()
        (root / MARKER).write_text("per-user workspaces: <root>/<user id>/\n")
    return report

"""``manage.py dispatch_split_workspace``: a shared workspace (before per-user workspaces)
moved into each user's own, so the agents of two users share nothing afterwards."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from chat.models import Conversation
from chat.services.workspace import conversation_dir

pytestmark = pytest.mark.django_db


@pytest.fixture
def root(settings, tmp_path):
    settings.DISPATCH_WORKSPACE_ROOT = str(tmp_path)
    return tmp_path


def conversation(owner, pk: str, cwd: str) -> None:
    Conversation.objects.create(id=pk, owner=owner, title=pk, cwd=cwd)


def test_a_shared_workspace_is_split_between_its_users(root, capsys):
    users = get_user_model().objects
    alice, bob, carol = (users.create_user(name) for name in ("alice", "bob", "carol"))
    (root / "alice-proj" / "src").mkdir(parents=True)
    (root / "alice-proj" / "src" / "secret.txt").write_text("alice's secret")
    (root / "common").mkdir()
    (root / "common" / "notes.md").write_text("shared notes")
    (root / "loose.txt").write_text("written in the root")
    (root / "orphan").mkdir()  # only used by a conversation with an empty cwd
    conversation(alice, "a1", "alice-proj/src")
    conversation(alice, "a2", str(root / "common"))  # absolute, inside the root
    conversation(bob, "b1", "common")
    conversation(carol, "c1", "")
    # Carol already has a workspace (the new version ran): it is not moved.
    (root / str(carol.pk)).mkdir()
    (root / str(carol.pk) / "mine.txt").write_text("carol's")

    call_command("dispatch_split_workspace")

    a, b, c = (root / str(user.pk) for user in (alice, bob, carol))
    assert (a / "alice-proj" / "src" / "secret.txt").read_text() == "alice's secret"
    assert not (b / "alice-proj").exists() and not (c / "alice-proj").exists()
    # Both used "common": each gets a copy of their own.
    assert (a / "common" / "notes.md").read_text() == (b / "common" / "notes.md").read_text()
    (a / "common" / "notes.md").write_text("alice's edit")
    assert (b / "common" / "notes.md").read_text() == "shared notes"
    # What no cwd names belonged to the root, so to those who worked in the root.
    assert (c / "loose.txt").read_text() == "written in the root"
    assert (c / "orphan").is_dir() and (c / "mine.txt").read_text() == "carol's"
    assert sorted(p.name for p in root.iterdir()) == sorted(
        [str(alice.pk), str(bob.pk), str(carol.pk), ".dispatch-split"]
    )
    assert Conversation.objects.get(pk="a2").cwd == "common"
    assert conversation_dir(owner_id=alice.pk, cwd="common") == a / "common"
    assert "copied common" in capsys.readouterr().out
    with pytest.raises(CommandError, match="already split"):
        call_command("dispatch_split_workspace")


def test_what_nobody_used_or_would_overwrite_is_kept_and_a_dry_run_changes_nothing(root, capsys):
    alice = get_user_model().objects.create_user("alice")
    (root / "proj").mkdir()
    (root / "stray").mkdir()
    conversation(alice, "a1", "proj")

    call_command("dispatch_split_workspace", "--dry-run")
    assert sorted(p.name for p in root.iterdir()) == ["proj", "stray"]
    assert f"moved proj → {alice.pk}/proj" in capsys.readouterr().out

    (root / str(alice.pk) / "proj").mkdir(parents=True)  # a target that exists already
    call_command("dispatch_split_workspace")

    out = capsys.readouterr().out
    assert f"kept .dispatch-shared/proj: {alice.pk}/proj exists already" in out
    assert "kept .dispatch-shared/stray: no conversation used it" in out
    assert sorted(p.name for p in (root / ".dispatch-shared").iterdir()) == ["proj", "stray"]

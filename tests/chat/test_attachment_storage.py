"""Attachments in storage: Django's storage API (any backend by settings), purging a
conversation's attachments after commit, and forgetting unsent ones."""

from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.core.files.storage import storages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.utils import timezone

from chat.errors import InvalidInput
from chat.models import Attachment
from chat.services import _log, attachments_purge
from chat.services.attachments import (
    UNSENT_MAX,
    attachment_bytes,
    attachment_upload,
    attachments_send,
)
from tests.chat.images import png_bytes

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def store(tmp_path, settings):
    """The ``attachments`` storage: a FileSystemStorage in a temporary directory."""
    location = tmp_path / "store"
    settings.STORAGES = {
        **settings.STORAGES,
        "attachments": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(location)},
        },
    }
    return location


async def upload(user, name: str, data: bytes, content_type: str = "application/octet-stream"):
    file = SimpleUploadedFile(name, data, content_type)
    return await attachment_upload(user=user, name=name, content_type=content_type, file=file)


@sync_to_async
def send(user, conversation_id: str, attachments: list[Attachment], cwd) -> list[dict]:
    with transaction.atomic():
        conversation = _log.conversation_ensure(user=user, conversation_id=conversation_id)
        return attachments_send(
            user=user,
            conversation=conversation,
            attachment_ids=[a.pk for a in attachments],
            cwd=str(cwd),
        )


def files_in(directory) -> list[str]:
    return sorted(p.name for p in directory.rglob("*") if p.is_file())


async def test_purge_deletes_rows_now_and_files_after_commit(store, tmp_path, user):
    workdir = tmp_path / "work"
    workdir.mkdir()
    image = await upload(user, "a.png", png_bytes(), "image/png")
    kept_copy = await upload(user, "keep.txt", b"original\n")
    gone_copy = await upload(user, "gone.txt", b"untouched\n")
    other = await upload(user, "other.png", png_bytes(), "image/png")
    await send(user, "c1", [image, kept_copy, gone_copy], workdir)
    await send(user, "c2", [other], workdir)
    (workdir / "keep.txt").write_text("changed by the agent\n")
    assert len(files_in(store)) == 4

    @sync_to_async
    def purge_then_fail():
        with transaction.atomic():
            assert attachments_purge("c1") == 3
            raise RuntimeError("the delete failed")

    with pytest.raises(RuntimeError):
        await purge_then_fail()
    assert len(files_in(store)) == 4  # rolled back: every row and file is still there
    assert await Attachment.objects.filter(conversation_id="c1").acount() == 3

    @sync_to_async
    def purge():
        with transaction.atomic():
            count = attachments_purge("c1")
            assert len(files_in(store)) == 4  # files go only once the transaction commits
            return count

    assert await purge() == 3
    assert await Attachment.objects.filter(conversation_id="c1").acount() == 0
    assert files_in(store) == [other.storage_name.rsplit("/", 1)[1]]
    assert await Attachment.objects.filter(conversation_id="c2").acount() == 1
    # The unchanged copy in the working directory went with it; the changed one stayed.
    assert files_in(workdir) == ["keep.txt"]
    assert (workdir / "keep.txt").read_text() == "changed by the agent\n"


async def test_any_storage_backend_serves_by_settings(settings, user):
    settings.STORAGES = {
        **settings.STORAGES,
        "attachments": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    }
    data = png_bytes(8, 8)
    attachment = await upload(user, "mem.png", data, "image/png")

    assert type(storages["attachments"]).__name__ == "InMemoryStorage"
    stored = await sync_to_async(attachment_bytes)(attachment)
    assert stored[:8] == b"\x89PNG\r\n\x1a\n" and attachment.size == len(stored)


async def test_unsent_attachments_are_capped_and_forgotten_after_a_day(store, user, other_user):
    old = await upload(user, "old.txt", b"old")
    await Attachment.objects.filter(pk=old.pk).aupdate(
        created_at=timezone.now() - timedelta(days=1, minutes=1)
    )
    for n in range(UNSENT_MAX - 1):
        await upload(user, f"{n}.txt", b"x")
    # The next upload forgets the stale one first: there is room for exactly one more.
    await upload(user, "last.txt", b"x")
    assert not await Attachment.objects.filter(pk=old.pk).aexists()
    assert old.storage_name.rsplit("/", 1)[1] not in files_in(store)
    with pytest.raises(InvalidInput) as refused:
        await upload(user, "one-too-many.txt", b"x")
    assert refused.value.message == (
        f"too many unsent attachments: at most {UNSENT_MAX}; send or remove some first"
    )
    await upload(other_user, "bob.txt", b"x")  # the cap is per user
    assert len(files_in(store)) == UNSENT_MAX + 1

"""Attachments through a conversation's life: forks (edit, regenerate) keep them, retry and
regenerate send them again, an export describes them and an import keeps that description
(pointing at nothing), and deleting a conversation deletes their files."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import sync_to_async
from django.core.files.uploadedfile import SimpleUploadedFile
from django.template.loader import render_to_string

from chat import exports, pages, selectors
from chat.models import Attachment, Conversation, Turn
from chat.running import running_turns
from chat.runtime import Message
from chat.services import (
    _log,
    attachment_upload,
    conversation_delete,
    conversation_fork,
    conversation_import,
    conversation_regenerate,
    turn_retry,
)
from chat.services.attachments import attachment_bytes, attachments_send
from tests.chat.images import png_bytes
from tests.chat.providers.sse_server import openai_text_reply
from tests.security.conftest import COMPLETIONS, scripted  # noqa: F401 - the fixture

pytestmark = pytest.mark.django_db(transaction=True)


async def upload(user, name: str, data: bytes, content_type: str):
    file = SimpleUploadedFile(name, data, content_type)
    return await attachment_upload(user=user, name=name, content_type=content_type, file=file)


@sync_to_async
def conversation_with(user, conversation_id: str, attachments, cwd) -> list[dict]:
    """A conversation whose log is one user message carrying ``attachments``; its chunks."""
    conversation = _log.conversation_ensure(user=user, conversation_id=conversation_id)
    chunks = attachments_send(
        user=user,
        conversation=conversation,
        attachment_ids=[a.pk for a in attachments],
        cwd=str(cwd),
    )
    _log.chunks_append(
        conversation_id=conversation_id,
        messages=[Message("user", [{"type": "text", "text": "see"}, *chunks])],
    )
    return chunks


def stored(store) -> list[str]:
    return sorted(p.name for p in store.rglob("*") if p.is_file())


@pytest.fixture
def store(settings, tmp_path):
    location = tmp_path / "store"
    settings.STORAGES = {
        **settings.STORAGES,
        "attachments": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(location)},
        },
    }
    return location


async def test_a_fork_has_its_own_attachments_sharing_the_files(user, store, tmp_path):
    image = await upload(user, "a.png", png_bytes(), "image/png")
    [chunk] = await conversation_with(user, "source", [image], tmp_path)

    fork = await conversation_fork(user=user, conversation_id="source")

    log = await sync_to_async(selectors.history_messages)(conversation_id=fork.id)
    forked = log[0].chunks[1]
    assert forked == {**chunk, "attachmentId": forked["attachmentId"]}
    assert forked["attachmentId"] != image.pk
    copy = await Attachment.objects.aget(pk=forked["attachmentId"])
    assert copy.conversation_id == fork.id and copy.storage_name == image.storage_name

    await conversation_delete(user=user, conversation_id="source")
    assert not await Attachment.objects.filter(pk=image.pk).aexists()
    # The fork still names the shared file: it stays, and the fork still shows the image.
    assert (
        await sync_to_async(attachment_bytes)(copy)
        == await sync_to_async((store / image.storage_name).read_bytes)()
    )
    turns = (await sync_to_async(pages.transcript)(conversation_id=fork.id)).turns
    assert turns[0].blocks[0].attachments[0].available

    await conversation_delete(user=user, conversation_id=fork.id)
    assert stored(store) == []


async def test_deleting_a_conversation_deletes_its_files(user, store, tmp_path):
    workdir = tmp_path / "work"
    workdir.mkdir()
    image = await upload(user, "a.png", png_bytes(), "image/png")
    notes = await upload(user, "notes.txt", b"mine\n", "text/plain")
    await conversation_with(user, "doomed", [image, notes], workdir)
    assert len(stored(store)) == 2 and (workdir / "notes.txt").exists()

    await conversation_delete(user=user, conversation_id="doomed")

    assert stored(store) == []
    assert not (workdir / "notes.txt").exists()  # unchanged, so it went too
    assert not await Attachment.objects.filter(owner=user).aexists()


async def test_an_export_describes_attachments_and_an_import_keeps_the_description(
    user, store, tmp_path
):
    image = await upload(user, "holiday.png", png_bytes(3, 2), "image/png")
    [chunk] = await conversation_with(user, "original", [image], tmp_path)
    conversation = await Conversation.objects.aget(pk="original")

    document = await sync_to_async(exports.export_document)(conversation=conversation)
    markdown = await sync_to_async(exports.export_markdown)(conversation=conversation)
    imported = await conversation_import(user=user, raw=json.dumps(document).encode())

    assert [c["chunk"] for c in document["chunks"]][1] == chunk
    assert "*Attached: image holiday.png (PNG · 3×2 · " in markdown
    log = await sync_to_async(selectors.history_messages)(conversation_id=imported.id)
    assert log[0].chunks[1] == chunk  # kept as it was …

    @sync_to_async
    def page() -> str:
        turns = pages.transcript(conversation_id=imported.id).turns
        return render_to_string("chat/_turn.html", {"turn": turns[0]})

    html = await page()  # … and pointing at nothing: the file was not exported
    assert "<img" not in html and "not available" in html


async def test_regenerate_sends_the_message_with_its_attachments_again(
    user,
    store,
    tmp_path,
    scripted,  # noqa: F811 - the fixture imported above
):
    scripted.script(COMPLETIONS, openai_text_reply("again"))
    image = await upload(user, "a.png", png_bytes(), "image/png")
    await conversation_with(user, "first", [image], tmp_path)

    fork = await conversation_regenerate(user=user, conversation_id="first", seq=1)
    async with asyncio.timeout(30):
        await running_turns.turns[fork.id].task

    log = await sync_to_async(selectors.history_messages)(conversation_id=fork.id)
    text, again = log[0].chunks
    assert text == {"type": "text", "text": "see"}
    assert again["type"] == "image" and again["attachmentId"] != image.pk
    copy = await Attachment.objects.aget(pk=again["attachmentId"])
    assert copy.conversation_id == fork.id and copy.storage_name == image.storage_name
    assert (await Attachment.objects.aget(pk=image.pk)).conversation_id == "first"
    # The model without vision got the placeholder naming it.
    assert "[Image: a.png, 40×30." in scripted.requests[-1].body["messages"][-1]["content"]


async def test_retrying_a_failed_image_only_turn_sends_the_image_again(
    user,
    store,
    tmp_path,
    scripted,  # noqa: F811 - the fixture imported above
):
    scripted.script(COMPLETIONS, openai_text_reply("now it works"))
    image = await upload(user, "only.png", png_bytes(), "image/png")

    @sync_to_async
    def failed_turn() -> None:
        conversation = _log.conversation_ensure(user=user, conversation_id="c1")
        [chunk] = attachments_send(
            user=user, conversation=conversation, attachment_ids=[image.pk], cwd=str(tmp_path)
        )
        Turn.objects.create(
            id="turn-1-failed", conversation=conversation, status=Turn.Status.SEALED,
            finish_reason="error",
        )  # fmt: skip
        _log.chunks_append(
            conversation_id="c1",
            messages=[Message("user", [{"type": "text", "text": ""}, chunk])],
            turn_id="turn-1-failed",
        )

    await failed_turn()
    running = await turn_retry(user=user, conversation_id="c1", turn_id="turn-1-failed")
    async with asyncio.timeout(30):
        await running.task

    log = await sync_to_async(selectors.history_messages)(conversation_id="c1")
    retried = log[1].chunks
    assert retried[0] == {"type": "text", "text": ""}
    assert retried[1]["name"] == "only.png" and retried[1]["attachmentId"] != image.pk

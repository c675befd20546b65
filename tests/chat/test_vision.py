"""The images of a conversation as a model takes them (chat.services.vision), and an image
chunk whose file the conversation does not have (an imported log): named, never shown."""

from __future__ import annotations

import base64

import pytest
from asgiref.sync import sync_to_async
from django.core.files.uploadedfile import SimpleUploadedFile
from django.template.loader import render_to_string

from chat import pages
from chat.runtime import Finish, Message, ProviderRequest
from chat.services import _log, attachment_upload
from chat.services.attachments import attachment_bytes, attachments_send
from chat.services.vision import MAX_IMAGES, ImagesForModel
from tests.chat.images import png_bytes

pytestmark = pytest.mark.django_db(transaction=True)


class Recording:
    """The provider behind the wrapper: records each request, answers nothing."""

    def __init__(self) -> None:
        self.requests: list[ProviderRequest] = []

    async def stream(self, request):
        self.requests.append(request)
        yield Finish("stop")


async def image(user, name: str = "p.png"):
    file = SimpleUploadedFile(name, png_bytes(3, 2))
    return await attachment_upload(user=user, name=name, content_type="image/png", file=file)


@sync_to_async
def sent(user, conversation_id: str, attachments) -> list[dict]:
    conversation = _log.conversation_ensure(user=user, conversation_id=conversation_id)
    return attachments_send(
        user=user, conversation=conversation, attachment_ids=[a.pk for a in attachments], cwd="."
    )


async def given(provider, messages) -> list[dict]:
    inner = provider._provider
    async for _ in provider.stream(ProviderRequest("m", messages)):
        pass
    return [c for m in inner.requests[-1].messages for c in m.chunks if c["type"] == "image"]


async def test_a_vision_model_gets_the_bytes_of_its_conversations_images_only(user, other_user):
    mine, elsewhere, theirs = await image(user), await image(user), await image(other_user)
    [chunk] = await sent(user, "c1", [mine])
    [elsewhere_chunk] = await sent(user, "c2", [elsewhere])
    [their_chunk] = await sent(other_user, "c3", [theirs])
    # A log that names images of other conversations (an import, a crafted export).
    messages = [
        Message("user", [{"type": "text", "text": "x"}, chunk, elsewhere_chunk, their_chunk])
    ]
    provider = ImagesForModel(Recording(), conversation_id="c1", vision=True)

    first, second, third = await given(provider, messages)

    stored = await sync_to_async(attachment_bytes)(mine)
    assert base64.b64decode(first["data"]) == stored and first["mediaType"] == "image/png"
    assert second == {**elsewhere_chunk, "unavailable": True}
    assert third == {**their_chunk, "unavailable": True}
    assert "data" not in chunk  # the log's chunks are copied, never changed


async def test_only_the_last_images_are_sent_and_models_without_vision_get_none(user):
    attachments = [await image(user, f"{n}.png") for n in range(MAX_IMAGES + 1)]
    chunks = await sent(user, "c1", attachments)
    messages = [Message("user", [{"type": "text", "text": "x"}, *chunks])]

    seeing = await given(ImagesForModel(Recording(), conversation_id="c1", vision=True), messages)
    assert seeing[0] == {**chunks[0], "omitted": True}
    assert all("data" in c for c in seeing[1:])

    blind = await given(ImagesForModel(Recording(), conversation_id="c1", vision=False), messages)
    assert blind[1:] == chunks[1:]  # no bytes: the adapter writes the placeholder


async def test_an_imported_image_shows_its_name_and_not_available(user):
    attachment = await image(user, "holiday.png")
    [chunk] = await sent(user, "original", [attachment])

    @sync_to_async
    def import_and_render(conversation_id: str) -> str:
        _log.conversation_ensure(user=user, conversation_id=conversation_id)
        _log.chunks_append(
            conversation_id=conversation_id,
            messages=[Message("user", [{"type": "text", "text": "look"}, chunk])],
            turn_id="turn-1-aaaaaa",
        )
        turns = pages.transcript(conversation_id=conversation_id).turns
        return render_to_string("chat/_turn.html", {"turn": turns[0]})

    original = await import_and_render("original")
    assert f'<img src="/attachments/{attachment.pk}/content" alt="holiday.png"' in original
    imported = await import_and_render("imported")
    assert "<img" not in imported
    assert '<span class="chip-name">holiday.png</span>' in imported
    assert "PNG · 3×2 · " in imported and "not available" in imported

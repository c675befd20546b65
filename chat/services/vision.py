"""The images of a conversation, as the turn's model can take them.

``ImagesForModel`` wraps a turn's provider: before each request it copies the request's
``image`` chunks and adds to each what the model is given (chat.runtime.attachments):

- a model with **vision** (the catalog says so: config ``vision``, the server's listing, or
  the known models) gets the image's bytes (``data``), which the adapter turns into an
  OpenAI ``image_url`` part or an Anthropic ``image`` block;
- a model **without vision** gets a description of the image written by the configured vision
  model (``[runtime] vision_model``) — asked once per image, kept on the attachment, and shown
  to the user under the image — or, with no vision model configured or when it fails, a
  placeholder naming the image. The embedded model has no vision, so this is what it gets;
- an image whose file is gone (an imported conversation, a deleted one) is named as no longer
  available; of a long conversation only the last ``MAX_IMAGES`` images are sent.

Bytes and descriptions are kept for the turn (a tool loop asks the provider many times), so a
step reads each image once. Nothing of this is written to the log.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async

from chat import selectors
from chat.config import get_config
from chat.models import Attachment
from chat.providers import UnknownModel, get_catalog
from chat.runtime import (
    Message,
    Provider,
    ProviderError,
    ProviderEvent,
    ProviderRequest,
    TextDelta,
)
from chat.services.attachments import attachment_bytes, attachment_chunk

log = logging.getLogger(__name__)

MAX_IMAGES = 20  # the most recent images of a conversation sent with a request
DESCRIPTION_MAX_TOKENS = 600
DESCRIPTION_TIMEOUT = 120.0  # seconds
DESCRIBE_PROMPT = (
    "Describe this image for an assistant that cannot see it, so it can answer questions "
    "about it: what it shows, any text in it (verbatim), and the details that matter. "
    "Be factual and concise; no preamble."
)


class ImagesForModel:
    """A Provider that gives the conversation's images to ``provider`` as its model takes them."""

    def __init__(self, provider: Provider, *, conversation_id: str, vision: bool) -> None:
        self._provider = provider
        self._conversation_id = conversation_id
        self._vision = vision
        self._rows: dict[str, Attachment | None] = {}
        self._data: dict[str, str | None] = {}  # attachment id → base64, None when unreadable

    async def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        messages = await self._prepare(request.messages)
        async for event in self._provider.stream(replace(request, messages=messages)):
            yield event

    async def _prepare(self, messages: list[Message]) -> list[Message]:
        ids = [
            chunk["attachmentId"]
            for message in messages
            for chunk in message.chunks
            if chunk.get("type") == "image" and isinstance(chunk.get("attachmentId"), str)
        ]
        if not ids:
            return messages
        unknown = [i for i in ids if i not in self._rows]
        if unknown:
            found = await database_sync_to_async(selectors.conversation_attachments)(
                conversation_id=self._conversation_id, ids=unknown
            )
            self._rows.update({i: found.get(i) for i in unknown})
        recent = set(ids[-MAX_IMAGES:])
        prepared = []
        for message in messages:
            chunks = message.chunks
            if any(chunk.get("type") == "image" for chunk in chunks):
                chunks = [await self._given(chunk, recent) for chunk in chunks]
            prepared.append(Message(message.role, chunks))
        return prepared

    async def _given(self, chunk: dict[str, Any], recent: set[str]) -> dict[str, Any]:
        if chunk.get("type") != "image":
            return chunk
        attachment_id = chunk.get("attachmentId")
        row = self._rows.get(attachment_id) if isinstance(attachment_id, str) else None
        if row is None:
            return {**chunk, "unavailable": True}
        if row.pk not in recent:
            return {**chunk, "omitted": True}
        if self._vision:
            data = await self._bytes(row)
            if data is None:
                return {**chunk, "unavailable": True}
            return {**chunk, "data": data, "mediaType": row.media_type}
        if await self._describe(row):
            return {**chunk, "description": row.description, "describedBy": row.described_by}
        return chunk

    async def _bytes(self, row: Attachment) -> str | None:
        if row.pk not in self._data:
            try:
                raw = await sync_to_async(attachment_bytes, thread_sensitive=False)(row)
            except OSError as exc:
                log.warning("attachment %s cannot be read: %s", row.pk, exc)
                self._data[row.pk] = None
            else:
                self._data[row.pk] = base64.b64encode(raw).decode("ascii")
        return self._data[row.pk]

    async def _describe(self, row: Attachment) -> bool:
        """Whether the image has a description (made now by the vision model if need be)."""
        if row.description:
            return True
        describer = get_config().runtime.vision_model
        if not describer:
            return False
        data = await self._bytes(row)
        if data is None:
            return False
        try:
            resolved = await get_catalog().resolve(describer)
        except UnknownModel as exc:
            log.warning("vision_model %s: %s", describer, exc)
            return False
        if not resolved.vision:
            log.warning("vision_model %s has no vision: images get a placeholder", describer)
            return False
        image = {**attachment_chunk(row), "data": data}
        request = ProviderRequest(
            model=resolved.provider_model,
            messages=[Message("user", [{"type": "text", "text": DESCRIBE_PROMPT}, image])],
            max_tokens=DESCRIPTION_MAX_TOKENS,
        )
        try:
            async with asyncio.timeout(DESCRIPTION_TIMEOUT):
                parts = [
                    event.text
                    async for event in resolved.provider.stream(request)
                    if isinstance(event, TextDelta)
                ]
        except (ProviderError, TimeoutError) as exc:
            log.warning("describing attachment %s with %s failed: %s", row.pk, describer, exc)
            return False
        description = "".join(parts).strip()
        if not description:
            return False
        row.description, row.described_by = description, resolved.name
        await database_sync_to_async(_keep_description)(row)
        return True


def _keep_description(row: Attachment) -> None:
    Attachment.objects.filter(pk=row.pk).update(
        description=row.description, described_by=row.described_by
    )

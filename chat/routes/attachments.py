"""Attachments over HTTP (docs/protocol.md#59-attachments): upload, read, download, remove.

Upload first (``POST /attachments``, multipart, one file in the field ``file``), then send the
ids with a message (``POST /chat {message, attachments: [id, …]}``, or the socket's
``chat.send``). Every route is its owner's only: someone else's attachment is a 404, exactly
like a missing one.

Downloads come from this origin and are never rendered as a page: ``X-Content-Type-Options:
nosniff`` (every response), an image as its re-encoded ``image/png`` or ``image/jpeg`` inline,
any other file as ``application/octet-stream`` to save (``Content-Disposition: attachment``),
and a ``sandbox`` Content-Security-Policy in case a browser opens one anyway.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.http import StreamingHttpResponse
from django.utils.http import content_disposition_header
from ninja import File, Router, Status, UploadedFile

from chat import selectors, services
from chat.errors import NotFound
from chat.schemas import AttachmentDeletedOut, AttachmentOut, Error
from chat.services.attachments import attachment_storage
from chat.services.inputs import AttachmentId, check

router = Router(tags=["attachments"])

READ_BLOCK = 1 << 16
# What a downloaded file may do when a browser opens it: nothing.
DOWNLOAD_POLICY = "default-src 'none'; img-src 'self'; sandbox"
ERRORS = {400: Error, 401: Error, 404: Error}


def _attachment(request, attachment_id: str):
    check("attachmentId", AttachmentId, attachment_id)
    return selectors.attachment_for_user(user=request.auth, attachment_id=attachment_id)


@router.post(
    "/attachments",
    response={201: AttachmentOut, 400: Error, 401: Error, 413: Error},
    summary="Upload one file (multipart field 'file'); send its id with a message",
)
async def upload(request, file: File[UploadedFile]):
    attachment = await services.attachment_upload(
        user=request.auth,
        name=file.name or "",
        content_type=file.content_type or "",
        file=file,
    )
    return Status(201, attachment.to_wire())


@router.get("/attachments/{attachment_id}", response={200: AttachmentOut, **ERRORS})
def attachment(request, attachment_id: str):
    return _attachment(request, attachment_id).to_wire()


@router.get(
    "/attachments/{attachment_id}/content",
    response={**ERRORS},
    summary="The attachment's bytes (an image as stored: re-encoded, without metadata)",
    openapi_extra={
        "responses": {
            "200": {
                "description": "The file",
                "content": {
                    "image/png": {},
                    "image/jpeg": {},
                    "application/octet-stream": {},
                },
            }
        }
    },
)
async def content(request, attachment_id: str):
    row = await sync_to_async(_attachment)(request, attachment_id)
    image = row.kind == row.Kind.IMAGE
    try:
        stored = await sync_to_async(attachment_storage().open)(row.storage_name, "rb")
    except OSError:  # the file went missing: as gone as its row would be
        raise NotFound.attachment(attachment_id) from None

    async def blocks():
        try:
            while block := await sync_to_async(stored.read, thread_sensitive=False)(READ_BLOCK):
                yield block
        finally:
            await sync_to_async(stored.close, thread_sensitive=False)()

    response = StreamingHttpResponse(
        blocks(), content_type=row.media_type if image else "application/octet-stream"
    )
    response["Content-Length"] = str(row.size)
    response["Content-Disposition"] = content_disposition_header(not image, row.name)
    response["Content-Security-Policy"] = DOWNLOAD_POLICY
    response["Cross-Origin-Resource-Policy"] = "same-origin"
    # An id always names the same bytes: the browser may keep them, for this user only.
    response["Cache-Control"] = "private, max-age=86400"
    return response


@router.delete(
    "/attachments/{attachment_id}",
    response={200: AttachmentDeletedOut, **ERRORS, 409: Error},
    summary="Remove an attachment that no message carried yet",
)
async def delete(request, attachment_id: str):
    check("attachmentId", AttachmentId, attachment_id)
    await services.attachment_delete(user=request.auth, attachment_id=attachment_id)
    return {"id": attachment_id, "deleted": True}

"""Attachments: upload one, remove an unsent one, send them with a message, purge a conversation's.

An attachment is uploaded first (``attachment_upload``: checked by its content, an image
re-encoded — chat.uploads) and stored unsent in the ``attachments`` storage of Django's
storage API (settings.STORAGES; FileSystemStorage under ``var/attachments`` unless a
deployment names another backend). A message then carries it by id (``turn_start(…,
attachments=[id, …])``): in the transaction that opens the turn, ``attachments_send`` binds it
to the conversation, saves a non-image file into the conversation's working directory (under a
new name when one is taken, never over another file) and returns the chunks of the user
message — ``image`` or ``file``, described, never the bytes (docs/protocol.md#21-chunk-types).

Only the owner may use, read or remove an attachment; someone else's id is ``attachment not
found`` like a missing one. Unsent attachments are capped per user (``UNSENT_MAX``) and forgotten
after ``UNSENT_TTL``. ``attachments_purge`` deletes a conversation's attachments (the
conversation delete calls it).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
import shutil
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path, PurePath

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import Storage, storages
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from chat import selectors
from chat.errors import Conflict, InvalidInput, NotFound
from chat.models import Attachment, Conversation
from chat.runtime.attachments import ATTACHMENT_TYPES
from chat.services.events import write
from chat.services.inputs import AttachmentIds, check
from chat.uploads import Upload, check_upload, too_large

log = logging.getLogger(__name__)

UNSENT_MAX = 50  # unsent attachments a user may hold
UNSENT_TTL = timedelta(days=1)  # an unsent attachment older than this is forgotten
NEW_NAMES = 1000  # report-1.csv … report-999.csv before a file name is given up
# Decoding and re-encoding images: a few threads of their own (an image of the largest allowed
# size takes hundreds of MB while decoded), never the default pool that DNS lookups use.
_images = ThreadPoolExecutor(max_workers=2, thread_name_prefix="attachments")


def attachment_storage() -> Storage:
    """Where attachments' bytes live: the ``attachments`` storage of settings.STORAGES."""
    return storages["attachments"]


# ---------------------------------------------------------------------- upload and remove


async def attachment_upload(*, user, name: str, content_type: str, file) -> Attachment:
    """Store an uploaded file (a Django ``UploadedFile``) as the user's unsent attachment.

    Its content decides what it is (chat.uploads): an image is re-encoded, without its
    metadata; any other file is kept as it came. Raises TooLarge over
    ``DISPATCH_ATTACHMENT_MAX_BYTES``, InvalidInput for an empty file, an image that is not
    one, too many pixels, or too many unsent attachments — and then stores nothing.
    """
    limit = settings.DISPATCH_ATTACHMENT_MAX_BYTES
    if file.size is not None and file.size > limit:
        raise too_large(name, file.size, limit)
    data = await sync_to_async(file.read)(limit + 1)
    upload = await asyncio.get_running_loop().run_in_executor(
        _images,
        lambda: check_upload(
            name=name,
            declared_type=content_type or "",
            data=data,
            max_bytes=limit,
            max_pixels=settings.DISPATCH_IMAGE_MAX_PIXELS,
        ),
    )
    return await write(_store, user=user, upload=upload)


def _store(*, user, upload: Upload) -> Attachment:
    _forget_stale(user)
    unsent = Attachment.objects.filter(owner_id=user.pk, conversation__isnull=True).count()
    if unsent >= UNSENT_MAX:
        raise InvalidInput(
            f"too many unsent attachments: at most {UNSENT_MAX}; send or remove some first"
        )
    attachment_id = new_attachment_id()
    suffix = {"image/png": ".png", "image/jpeg": ".jpg"}.get(upload.media_type, ".bin")
    storage = attachment_storage()
    stored = storage.save(f"{user.pk}/{attachment_id}{suffix}", ContentFile(upload.data))
    try:
        return Attachment.objects.create(
            id=attachment_id,
            owner=user,
            kind=upload.kind,
            name=upload.name,
            media_type=upload.media_type,
            size=upload.size,
            width=upload.width,
            height=upload.height,
            sha256=upload.sha256,
            storage_name=stored,
        )
    except BaseException:
        storage.delete(stored)
        raise


def new_attachment_id() -> str:
    """A fresh attachment id: ``att_`` and 24 random URL-safe characters (144 bits)."""
    return "att_" + secrets.token_urlsafe(18)


def _forget_stale(user) -> None:
    """Delete the user's unsent attachments older than UNSENT_TTL (a page closed mid-draft)."""
    stale = Attachment.objects.filter(
        owner_id=user.pk,
        conversation__isnull=True,
        created_at__lt=timezone.now() - UNSENT_TTL,
    )
    _delete(stale)


async def attachment_delete(*, user, attachment_id: str) -> None:
    """Remove an unsent attachment (the composer's ×): its row now, its file after commit.

    NotFound for someone else's or a missing one; Conflict once a message carried it (it is
    part of that conversation's log then, and goes with the conversation).
    """
    await write(_remove, user=user, attachment_id=attachment_id)


def _remove(*, user, attachment_id: str) -> None:
    attachment = selectors.attachment_for_user(user=user, attachment_id=attachment_id)
    if attachment.conversation_id is not None:
        raise Conflict(
            f"attachment {attachment_id} was sent with a message: it stays with its conversation"
        )
    _delete(Attachment.objects.filter(pk=attachment.pk))


def attachments_purge(conversation_id: str) -> int:
    """Delete a conversation's attachments: their rows now, in the caller's transaction, and
    their stored files once it commits (nothing is lost if it rolls back). A file's copy in the
    working directory goes too while it is unchanged; one the agent or the user changed stays.
    Returns how many there were. Call it before deleting the conversation itself.
    """
    return _delete(Attachment.objects.filter(conversation_id=conversation_id))


def _delete(rows) -> int:
    """Delete the rows; once committed, their files that no other row names (a fork's copy of
    an attachment shares its source's files)."""
    doomed = list(rows.values_list("storage_name", "workspace_path", "sha256"))
    if not doomed:
        return 0
    rows.delete()
    names = {name for name, _, _ in doomed}
    paths = {path for _, path, _ in doomed if path}
    kept = Attachment.objects.filter(Q(storage_name__in=names) | Q(workspace_path__in=paths))
    kept_names, kept_paths = set(), set()
    for name, path in kept.values_list("storage_name", "workspace_path"):
        kept_names.add(name)
        kept_paths.add(path)
    files = [
        ("" if name in kept_names else name, "" if path in kept_paths else path, sha256)
        for name, path, sha256 in doomed
    ]
    files = [file for file in files if file[0] or file[1]]
    if files:
        transaction.on_commit(lambda: _delete_files(files))
    return len(doomed)


def _delete_files(doomed: list[tuple[str, str, str]]) -> None:
    storage = attachment_storage()
    for storage_name, workspace_path, sha256 in doomed:
        try:
            if storage_name:
                storage.delete(storage_name)
        except Exception:
            log.exception("could not delete attachment file %s", storage_name)
        if workspace_path:
            _delete_unchanged_copy(Path(workspace_path), sha256)


def _delete_unchanged_copy(path: Path, sha256: str) -> None:
    try:
        if not path.is_file() or path.is_symlink():
            return
        digest = hashlib.sha256()
        with path.open("rb") as copy:
            for block in iter(lambda: copy.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() == sha256:
            path.unlink()
    except OSError as exc:
        log.warning("could not delete the copy %s: %s", path, exc)


# ---------------------------------------------------------------------- sending


async def attachments_check(*, user, attachment_ids) -> tuple[str, ...]:
    """The attachment ids a message will carry, checked before anything is written.

    InvalidInput for a value that is not a list of ids, more than
    ``DISPATCH_ATTACHMENTS_PER_MESSAGE``, an id listed twice or already sent; NotFound for an
    id that is not the user's.
    """
    ids = check("attachments", AttachmentIds, attachment_ids)
    limit = settings.DISPATCH_ATTACHMENTS_PER_MESSAGE
    if len(ids) > limit:
        raise InvalidInput(f"at most {limit} per message ({len(ids)} given)", field="attachments")
    if len(set(ids)) != len(ids):
        raise InvalidInput("an attachment is listed twice", field="attachments")
    await database_sync_to_async(_unsent)(user=user, ids=ids)
    return tuple(ids)


def _unsent(*, user, ids, lock: bool = False) -> list[Attachment]:
    rows = Attachment.objects.filter(owner_id=user.pk, pk__in=list(ids))
    if lock:
        rows = rows.select_for_update()
    found = {row.pk: row for row in rows}
    for attachment_id in ids:
        row = found.get(attachment_id)
        if row is None:
            raise NotFound.attachment(attachment_id)
        if row.conversation_id is not None:
            raise InvalidInput(f"{attachment_id} was already sent", field="attachments")
    return [found[attachment_id] for attachment_id in ids]


def attachments_names(*, user, ids) -> list[str]:
    """The names of the user's attachments of ``ids``, in that order (for a default title)."""
    names = dict(
        Attachment.objects.filter(owner_id=user.pk, pk__in=list(ids)).values_list("pk", "name")
    )
    return [names[i] for i in ids if i in names]


def attachments_send(*, user, conversation: Conversation, attachment_ids, cwd: str) -> list[dict]:
    """Give the unsent attachments to the conversation's new user message; their chunks.

    Runs in the transaction that opens the turn. A file is saved into the working directory
    ``cwd``: ``report.csv``, or ``report-1.csv`` … when that name is taken (never over an
    existing file or through a symlink). Raises like ``attachments_check``; files already
    saved are removed again when a later one fails.
    """
    rows = _unsent(user=user, ids=attachment_ids, lock=True)
    now = timezone.now()
    written: list[Path] = []
    chunks = []
    try:
        for row in rows:
            if row.kind == Attachment.Kind.FILE:
                saved = _save_into(Path(cwd), row)
                written.append(saved)
                row.workspace_path = str(saved)
            row.conversation = conversation
            row.sent_at = now
            row.save(update_fields=["conversation", "sent_at", "workspace_path"])
            chunks.append(attachment_chunk(row))
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return chunks


def _save_into(directory: Path, row: Attachment) -> Path:
    stem, suffix = PurePath(row.name).stem, PurePath(row.name).suffix
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for number in range(NEW_NAMES):
        path = directory / (row.name if number == 0 else f"{stem}-{number}{suffix}")
        try:
            descriptor = os.open(path, flags, 0o644)
        except FileExistsError:
            continue
        except OSError as exc:
            raise InvalidInput(
                f"{row.name} cannot be saved in the working directory: {exc.strerror}",
                field="attachments",
            ) from None
        try:
            with (
                os.fdopen(descriptor, "wb") as copy,
                attachment_storage().open(row.storage_name, "rb") as stored,
            ):
                shutil.copyfileobj(stored, copy)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path
    raise InvalidInput(
        f"{row.name} cannot be saved: the working directory has too many files of that name",
        field="attachments",
    )


def attachment_chunk(row: Attachment) -> dict:
    """The ``image`` or ``file`` chunk of a sent attachment (docs/protocol.md#21-chunk-types)."""
    chunk = {
        "type": row.kind,
        "attachmentId": row.pk,
        "name": row.name,
        "mediaType": row.media_type,
        "size": row.size,
    }
    if row.kind == Attachment.Kind.IMAGE:
        chunk |= {"width": row.width, "height": row.height}
    else:
        chunk["path"] = PurePath(row.workspace_path).name or row.name
    return chunk


# ---------------------------------------------------------------------- forks


def attachments_fork(*, source: Conversation, fork: Conversation, payloads: list[dict]) -> list:
    """The chunks a fork copies from ``source``, for the fork: each attachment they name gets a
    row of the fork — a new id, the same stored file, description and working-directory copy
    (deleting either conversation leaves the other its files) — and the chunks name it. Other
    chunks come back as they are. In the transaction that makes the fork."""
    ids = {
        payload["attachmentId"]
        for payload in payloads
        if payload.get("type") in ATTACHMENT_TYPES and isinstance(payload.get("attachmentId"), str)
    }
    if not ids:
        return payloads
    renamed = {
        row.pk: _copy(row, conversation_id=fork.pk).pk
        for row in Attachment.objects.filter(conversation=source, pk__in=ids)
    }
    return [
        {**payload, "attachmentId": renamed[payload["attachmentId"]]}
        if payload.get("type") in ATTACHMENT_TYPES and payload.get("attachmentId") in renamed
        else payload
        for payload in payloads
    ]


def attachments_again(*, user, conversation_id: str, seq: int) -> list[str]:
    """Unsent copies of the attachments of the user message at ``seq`` (to send that message
    once more: a regenerate); their ids, in the message's order."""
    payloads = selectors.message_chunks(conversation_id=conversation_id, seq=seq)
    ids = [p.get("attachmentId") for p in payloads if p.get("type") in ATTACHMENT_TYPES]
    rows = selectors.conversation_attachments(conversation_id=conversation_id, ids=ids)
    return [
        _copy(rows[i], conversation_id=None, sent_at=None, workspace_path="").pk
        for i in ids
        if i in rows and rows[i].owner_id == user.pk
    ]


def _copy(row: Attachment, **changes) -> Attachment:
    """A new row (a new id) with ``row``'s fields but ``changes`` (column names)."""
    fields = {
        field.attname: getattr(row, field.attname)
        for field in Attachment._meta.concrete_fields
        if field.attname not in ("id", "created_at")
    }
    return Attachment.objects.create(id=new_attachment_id(), **(fields | changes))


def attachment_bytes(row: Attachment) -> bytes:
    """The stored bytes of an attachment (OSError when its file is gone)."""
    with attachment_storage().open(row.storage_name, "rb") as stored:
        return stored.read()

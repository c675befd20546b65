"""Events to sockets, sent only once the transaction that caused them has committed.

Zulip's ``send_event_on_commit``: a write function calls ``publish_on_commit`` inside its
transaction; nothing is sent if the transaction rolls back. ``write()`` runs a write function
in the database thread, collects what it published and sends it from the event loop in order,
after the commit. Called from a plain thread instead (the admin, the recovery sweep), the
events are sent from that thread when its transaction commits.

Groups: a conversation's group (its turn events, status and queue) and a user's group (what
every page and socket of the user shows about all of their conversations: the list and tabs).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from asgiref.sync import async_to_sync, sync_to_async
from django.db import (
    DatabaseError,
    InternalError,
    OperationalError,
    close_old_connections,
    transaction,
)

from chat.errors import Unavailable
from chat.models import group_name_for
from chat.running import notify

T = TypeVar("T")
_outbox = threading.local()


def user_group(user_id: int) -> str:
    """The channel-layer group of every socket of one user."""
    return f"user.{user_id}"


def conversation_group(conversation_id: str) -> str:
    return group_name_for(conversation_id)


def publish_on_commit(group: str, message: dict[str, Any]) -> None:
    """Send ``message`` to ``group`` after the current transaction commits (now outside one)."""
    transaction.on_commit(lambda: _committed(group, message))


def _committed(group: str, message: dict[str, Any]) -> None:
    box = getattr(_outbox, "events", None)
    if box is not None:
        box.append((group, message))  # write() sends it from the event loop
    else:
        async_to_sync(notify)(group, message)


def _collect(function: Callable[..., T], kwargs: dict[str, Any]) -> tuple[T, list]:
    # Channels' database_sync_to_async closes old connections around every call; inside a
    # caller's transaction (the admin's change form) that would close it mid-way.
    if not transaction.get_connection().in_atomic_block:
        close_old_connections()
    _outbox.events = events = []
    try:
        with transaction.atomic():
            result = function(**kwargs)
    finally:
        _outbox.events = None
    return result, events


async def write(function: Callable[..., T], **kwargs: Any) -> T:
    """Run the sync ``function(**kwargs)`` in one transaction in the database thread; after it
    commits, send the events it published, in order. Returns what ``function`` returned.

    A database that refuses the write (unreachable, locked, full, read-only) raises
    Unavailable with a short phrase (``storage_failure``), never its SQL or data.
    """
    try:
        result, events = await sync_to_async(_collect)(function, kwargs)
    except (OperationalError, InternalError) as exc:
        raise storage_failure(exc) from exc
    for group, message in events:
        await notify(group, message)
    return result


# What a client may hear of a database failure: a phrase per kind, never the driver's message,
# which can hold the statement and the data (PostgreSQL's LINE/DETAIL/CONTEXT lines).
_STORAGE_PHRASES = (
    (("database is locked", "deadlock", "could not obtain lock"), "the database is locked"),
    (
        ("disk is full", "no space left", "could not extend", "disk full"),
        "the database disk is full",
    ),
    (("readonly database", "read-only"), "the database is read-only"),
    (("disk i/o error", "could not write", "could not fsync"), "the database cannot write to disk"),
)


def storage_failure(exc: DatabaseError) -> Unavailable:
    """Unavailable naming what kind of failure ``exc`` is, in words fit for a client."""
    text = str(exc).lower()
    for needles, phrase in _STORAGE_PHRASES:
        if any(needle in text for needle in needles):
            return Unavailable(phrase)
    if isinstance(exc, OperationalError | InternalError):
        return Unavailable("the database is unavailable")
    return Unavailable(f"the database refused the write ({type(exc).__name__})")

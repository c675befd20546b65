"""Archive, restore and delete conversations.

- **Archive** hides a conversation from its owner's list and tabs; it stays readable by id,
  searchable, and is restored by ``conversation_restore`` (or by opening it as a tab, or a
  new message).
- **Delete** is for good: the conversation is marked deleted at once (from then on its id
  answers 404 everywhere and open pages leave it), its running turn is stopped and waited
  for, then its chunks, turns, metrics, queue, tabs, search entries and attachments go in
  one transaction. The row stays as a tombstone holding only the id and owner, so the id is
  never reused. A deletion cut short by a dying process is finished at the next start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time

from channels.db import database_sync_to_async
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from chat import selectors
from chat.errors import NotFound
from chat.models import Chunk, Conversation, QueuedMessage, SearchEntry, Tab, Turn
from chat.running import running_turns
from chat.services.attachments import attachments_purge
from chat.services.events import conversation_group, publish_on_commit, user_group, write
from chat.services.inputs import ConversationId, check
from chat.services.turns import abort_running, status_changed
from metrics.models import TurnMetrics as TurnMetricsRow

STOP_WAIT_SECONDS = 15.0  # how long a deletion waits for the running turn to seal
UNFINISHED_AFTER = dt.timedelta(minutes=1)  # a deletion this old and not purged was cut short


async def conversation_archive(*, user, conversation_id: str) -> Conversation:
    """Archive: out of the list and the tabs, still readable and restorable. Idempotent."""
    check("conversationId", ConversationId, conversation_id)
    return await write(_do_archive, user=user, conversation_id=conversation_id, archive=True)


async def conversation_restore(*, user, conversation_id: str) -> Conversation:
    """Restore an archived conversation to the list. Idempotent."""
    check("conversationId", ConversationId, conversation_id)
    return await write(_do_archive, user=user, conversation_id=conversation_id, archive=False)


def _do_archive(*, user, conversation_id: str, archive: bool) -> Conversation:
    conversation = _owned(user, conversation_id)
    if (conversation.archived_at is not None) != archive:
        conversation.archived_at = timezone.now() if archive else None
        conversation.save(update_fields=["archived_at"])
        if archive:
            Tab.objects.filter(conversation=conversation).delete()
        _conversations_changed(user.pk)
    return conversation


def _owned(user, conversation_id: str) -> Conversation:
    conversation = selectors.conversation_for_user(user=user, conversation_id=conversation_id)
    if conversation is None:
        raise NotFound.conversation(conversation_id)
    return conversation


async def conversation_delete(*, user, conversation_id: str) -> None:
    """Delete the conversation for good (see the module's docstring); NotFound when it does
    not exist, is someone else's or was deleted already."""
    check("conversationId", ConversationId, conversation_id)
    await write(_do_mark, user=user, conversation_id=conversation_id)
    await _stop_and_wait(conversation_id)
    await write(conversation_purge, conversation_id=conversation_id)


def _do_mark(*, user, conversation_id: str) -> None:
    conversation = _owned(user, conversation_id)
    # Closed: a turn sealing from now on carries no queued text into a new turn.
    Conversation.objects.filter(pk=conversation.pk).update(
        deleted_at=timezone.now(), status=Conversation.Status.CLOSED
    )
    status_changed(conversation_id=conversation_id, status=Conversation.Status.CLOSED)
    publish_on_commit(
        conversation_group(conversation_id),
        {"type": "chat.deleted", "conversation": conversation_id},
    )
    _conversations_changed(user.pk)


async def _stop_and_wait(conversation_id: str) -> None:
    """Stop the running turn, wherever it runs, and wait (bounded) until it is sealed."""
    if not await abort_running(conversation_id):
        return
    running = running_turns.turns.get(conversation_id)
    if running is not None and running.task is not None:
        # Purged anyway after the wait: a turn that cannot stop must not keep the data.
        with contextlib.suppress(TimeoutError, asyncio.CancelledError, Exception):
            await asyncio.wait_for(asyncio.shield(running.task), STOP_WAIT_SECONDS)
        return
    # The turn runs in another worker: its seal is seen in the database only.
    deadline = time.monotonic() + STOP_WAIT_SECONDS
    running_turn = database_sync_to_async(selectors.running_turn)
    while time.monotonic() < deadline:
        if not await running_turn(conversation_id=conversation_id):
            return
        await asyncio.sleep(0.05)  # noqa: ASYNC110 - polling another process's database write


def conversation_purge(*, conversation_id: str) -> None:
    """Remove everything of a deleted conversation but its tombstone row (one transaction)."""
    conversation = Conversation.objects.select_for_update().filter(pk=conversation_id).first()
    if conversation is None or conversation.deleted_at is None:
        return
    Chunk.objects.filter(conversation_id=conversation_id).delete()
    TurnMetricsRow.objects.filter(conversation_id=conversation_id).delete()
    Turn.objects.filter(conversation_id=conversation_id).delete()
    QueuedMessage.objects.filter(conversation_id=conversation_id).delete()
    Tab.objects.filter(conversation_id=conversation_id).delete()
    SearchEntry.objects.filter(conversation_id=conversation_id).delete()
    Conversation.objects.filter(forked_from_id=conversation_id).update(forked_from=None)
    attachments_purge(conversation_id)  # rows now, stored files once this commits
    Conversation.objects.filter(pk=conversation_id).update(
        title="",
        model="",
        cwd="",
        system_prompt_template=None,
        system_prompt="",
        system_prompt_resolved_for="",
        forked_from=None,
        forked_at_seq=None,
        archived_at=None,
    )
    _conversations_changed(conversation.owner_id)


def deletions_finish() -> int:
    """Purge conversations whose deletion was cut short (marked a while ago, still holding
    data); how many. Called at start-up."""
    before = timezone.now() - UNFINISHED_AFTER
    pending = (
        Conversation.objects.filter(deleted_at__lt=before)
        .filter(Q(chunks__isnull=False) | Q(turns__isnull=False) | Q(tabs__isnull=False))
        .values_list("pk", flat=True)
        .distinct()
    )
    ids = list(pending)
    for conversation_id in ids:
        with transaction.atomic():
            conversation_purge(conversation_id=conversation_id)
    return len(ids)


def _conversations_changed(user_id: int) -> None:
    publish_on_commit(user_group(user_id), {"type": "user.conversations"})

"""The message queue: texts a user sends while a turn runs, injected at its next tool-result
boundary as steering, or carried into a new turn when it ends (docs/protocol.md#4-the-turn)."""

from __future__ import annotations

from channels.db import database_sync_to_async

from chat import selectors
from chat.ratelimit import turn_rate_check
from chat.services import _log
from chat.services.events import write
from chat.services.inputs import ConversationId, MessageId, MessageText, check
from chat.services.turns import (
    carry,
    queue_changed,
    queue_take,
    turn_runs,
    turn_start,
    turns_accepted,
)


async def queue_add(*, user, conversation_id: str, text: str) -> tuple[bool, list[dict]]:
    """Queue a text for the running turn, or start a turn with it when none runs.

    Returns (started a turn, the queue). Errors as ``turn_start``'s.
    """
    check("conversationId", ConversationId, conversation_id)
    text = check("text", MessageText, text)
    conversation = await database_sync_to_async(selectors.conversation_for_user)(
        user=user, conversation_id=conversation_id
    )
    if conversation is None:
        await turn_start(user=user, conversation_id=conversation_id, message=text)
        return True, []
    started = False
    if not await turn_runs(conversation_id):
        turns_accepted()  # the text would start a turn here: refused while shutting down
        await turn_rate_check(user=user)  # and counted first
    queue = await write(_push, conversation_id=conversation_id, text=text)
    # Order matters: queued first, then look for the turn. If the turn sealed in between, its
    # own final drain may have taken the text; else we take it and start a turn.
    if not await turn_runs(conversation_id):
        queued = await write(queue_take, conversation_id=conversation_id)
        if queued:
            started = await carry(conversation_id, "\n\n".join(queued)) is not None
            queue = await database_sync_to_async(selectors.queue_list)(
                conversation_id=conversation_id
            )
    return started, queue


async def queue_cancel(*, user, conversation_id: str, message_id: str) -> tuple[bool, list[dict]]:
    """Take a queued text off the queue; (whether it was there, the queue)."""
    check("conversationId", ConversationId, conversation_id)
    message_id = check("messageId", MessageId, message_id)
    await database_sync_to_async(selectors.conversation_for_user)(
        user=user, conversation_id=conversation_id
    )
    return await write(_cancel, conversation_id=conversation_id, message_id=message_id)


def _push(*, conversation_id: str, text: str) -> list[dict]:
    _log.queue_push(conversation_id=conversation_id, text=text)
    queue = selectors.queue_list(conversation_id=conversation_id)
    queue_changed(conversation_id=conversation_id, queue=queue)
    return queue


def _cancel(*, conversation_id: str, message_id: str) -> tuple[bool, list[dict]]:
    cancelled = _log.queue_delete(conversation_id=conversation_id, message_id=message_id)
    queue = selectors.queue_list(conversation_id=conversation_id)
    queue_changed(conversation_id=conversation_id, queue=queue)
    return cancelled, queue

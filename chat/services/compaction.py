"""Compaction on request, and a conversation's compaction threshold
(docs/protocol.md#24-compaction).

A manual compaction runs as a compaction turn (chat.runtime ``kind="compaction"``): it holds
the conversation like a turn (a turn cannot start meanwhile, nor it during a turn: 409), a
stop aborts it, recovery seals it if its worker dies, and its model call is in its
TurnMetrics. It writes nothing until the summary is complete; then the summary is one chunk
appended in one transaction. Automatic compaction happens inside turns (chat.runtime).
"""

from __future__ import annotations

from channels.db import database_sync_to_async

from chat import selectors
from chat.errors import Conflict, InvalidInput, ModelFailed
from chat.models import Conversation
from chat.providers import get_catalog
from chat.ratelimit import turn_rate_check
from chat.running import RunningTurn
from chat.runtime import Budget, effective
from chat.runtime.context import cut_index, estimate_request_tokens
from chat.services.conversations import _update
from chat.services.inputs import CompactThreshold, ConversationId, check
from chat.services.turns import (
    compaction_start,
    context_settings,
    resolve_model,
    turn_runs,
)
from chat.tools import get_tool_registry

TOO_SHORT = (
    "the conversation is too short to compact: the last {keep} messages are kept as they are"
)


async def conversation_compact(*, user, conversation_id: str) -> RunningTurn:
    """Start compacting the conversation now; the running compaction turn.

    Refused with InvalidInput when there is nothing to summarize (the conversation is too
    short), Conflict while a turn runs, NotFound for someone else's conversation,
    RateLimited like a turn start.
    """
    check("conversationId", ConversationId, conversation_id)
    conversation = await database_sync_to_async(selectors.conversation_for_user)(
        user=user, conversation_id=conversation_id
    )
    if await turn_runs(conversation_id):
        raise Conflict("a turn is already running in this conversation")
    resolved = await resolve_model(
        (conversation.model if conversation else "") or get_catalog().default_model
    )
    settings = context_settings(conversation, resolved) if conversation else None
    history = await database_sync_to_async(selectors.history_messages)(
        conversation_id=conversation_id
    )
    keep = settings["keep_messages"] if settings else 0
    if conversation is None or not _compactable(history, settings):
        raise InvalidInput(TOO_SHORT.format(keep=keep))
    await turn_rate_check(user=user)
    return await compaction_start(user=user, conversation=conversation)


def _compactable(history, settings: dict) -> bool:
    """Whether a compaction of ``history`` would summarize anything: the runtime's cut, with
    the tools' descriptions estimated (the runtime counts them, and says so in-band in the
    rare case the two disagree)."""
    budget = Budget.for_model(
        settings["context_window"], settings["compact_threshold"], settings["max_tokens"]
    )
    tools = [tool.spec for tool in get_tool_registry().tools().values()]
    keep_tokens = budget.keep_tokens(estimate_request_tokens([], tools))
    view = effective(history)
    return cut_index(view.messages, keep=settings["keep_messages"], keep_tokens=keep_tokens) > 0


async def compaction_result(running: RunningTurn) -> dict:
    """Wait for a compaction turn to end: its ``compaction-done`` event; else the refusal its
    failure is (Conflict when stopped, InvalidInput when too short, ModelFailed when the
    model gave no summary or failed)."""
    queue = running.listen()
    done = failed = None
    try:
        while True:
            event = await queue.get()
            if event["type"] == "compaction-done":
                done = event
            elif event["type"] in ("compaction-failed", "error"):
                failed = failed or event
            elif event["type"] == "turn-sealed":
                break
    finally:
        running.listeners.discard(queue)
    if done is not None:
        return done
    code = failed.get("code") if failed else None
    message = failed["message"] if failed else "the compaction ended without a summary"
    if code == "aborted":
        raise Conflict("the compaction was stopped")
    if code == "too-short":
        raise InvalidInput(message)
    raise ModelFailed(f"compaction failed: {message}")


async def conversation_set_compaction(
    *, user, conversation_id: str, threshold: int
) -> Conversation:
    """Set the conversation's compaction threshold: the share of the model's window (%) at
    which it is compacted before a provider call; 0 turns automatic compaction off."""
    threshold = check("threshold", CompactThreshold, threshold)
    return await _update(user, conversation_id, compact_threshold=threshold)

"""Reads: history slices and conversation lists. Never writes."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Q, QuerySet

from chat.models import Chunk, Conversation, QueuedMessage
from chat.runtime import Message


class NotFound(Exception):
    """The object does not exist for this caller (someone else's reads the same)."""


def conversation_for_user(*, user, conversation_id: str) -> Conversation | None:
    """The caller's conversation, None when it does not exist yet; NotFound if not theirs."""
    conversation = Conversation.objects.filter(pk=conversation_id).first()
    if conversation is not None and conversation.owner_id != user.pk:
        raise NotFound(conversation_id)
    return conversation


@dataclass(frozen=True)
class HistoryWindow:
    since_seq: int = 0
    before_seq: int | None = None
    limit: int | None = None


def history_slice(*, conversation_id: str, window: HistoryWindow) -> tuple[list[dict], int]:
    """SPEC §4 history read: the raw StoredChunks of the window and ``latestSeq``.

    ``limit`` keeps the NEWEST k of the selection, returned ascending. With the unique
    (conversation, seq) index both directions are index range scans, so a tail read of k
    chunks costs O(k) whatever the conversation's size.
    """
    rows = Chunk.objects.filter(conversation_id=conversation_id, seq__gt=window.since_seq)
    if window.before_seq is not None:
        rows = rows.filter(seq__lt=window.before_seq)
    fields = ("seq", "role", "payload")
    if window.limit is not None:
        picked = list(rows.order_by("-seq").values_list(*fields)[: window.limit])
        picked.reverse()
    else:
        picked = list(rows.order_by("seq").values_list(*fields))
    chunks = [{"seq": seq, "role": role, "chunk": payload} for seq, role, payload in picked]
    latest = chunks[-1]["seq"] if chunks else window.since_seq
    return chunks, latest


def history_messages(*, conversation_id: str) -> list[Message]:
    """The whole log regrouped into messages by their ordinal (for feeding a provider)."""
    rows = (
        Chunk.objects.filter(conversation_id=conversation_id)
        .order_by("seq")
        .values_list("message", "role", "payload")
    )
    messages: list[Message] = []
    current = None
    for ordinal, role, payload in rows:
        if ordinal != current:
            messages.append(Message(role, []))
            current = ordinal
        messages[-1].chunks.append(payload)
    return messages


def conversation_list(*, user, statuses: list[str] | None = None, q: str = "") -> QuerySet:
    rows = Conversation.objects.filter(owner=user)
    if statuses:
        rows = rows.filter(status__in=statuses)
    if q:
        rows = rows.filter(Q(id__startswith=q) | Q(title__istartswith=q))
    return rows.order_by("-last_activity_at", "id")


def queue_list(*, conversation_id: str) -> list[dict]:
    return [m.to_wire() for m in QueuedMessage.objects.filter(conversation_id=conversation_id)]

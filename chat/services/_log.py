"""The services' synchronous write primitives: conversations, the append-only chunk log, turn
rows and the queue. Private to chat.services: transports call the intents instead.

Each function is one transaction; ``chunks_append`` is the only code that assigns seqs.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils import timezone

from chat import search
from chat.errors import Conflict
from chat.models import (
    Chunk,
    Conversation,
    QueuedMessage,
    SearchEntry,
    Turn,
)
from chat.runtime import Message, TurnMetrics
from chat.selectors import conversation_for_user
from metrics.services import turn_metrics_record

TITLE_LENGTH = 40
# What U+0000 in model or tool output becomes: PostgreSQL's text and jsonb cannot hold it, and
# U+FFFD is what HTML parsers and decoders put in place of characters they cannot use.
NUL_REPLACEMENT = "\ufffd"


def storable(value):
    """``value`` (a string, or JSON-like lists and dicts of them) with every U+0000 replaced by
    U+FFFD, keys included; the same value when there is none. Input from clients is refused
    instead (chat.services.inputs); this is for what the model and the tools produce."""
    if isinstance(value, str):
        return value.replace("\0", NUL_REPLACEMENT) if "\0" in value else value
    if isinstance(value, dict):
        return {storable(key): storable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [storable(item) for item in value]
    return value


def default_title(text: str) -> str:
    """The first message, trimmed, 40 characters + "…" (docs/protocol.md#8-web-app-socket)."""
    text = " ".join(text.split())
    return text if len(text) <= TITLE_LENGTH else text[:TITLE_LENGTH].rstrip() + "…"


def conversation_ensure(
    *, user, conversation_id: str, missing: bool = False, **defaults
) -> Conversation:
    """The caller's conversation, created on first use; NotFound when someone else owns it.
    ``missing``: the caller has just read that it does not exist (in this transaction), so
    the first attempt creates it without reading it again."""
    for attempt in range(3):
        if attempt or not missing:
            conversation = conversation_for_user(user=user, conversation_id=conversation_id)
            if conversation is not None:
                return conversation
        try:
            with transaction.atomic():
                conversation = Conversation.objects.create(
                    id=conversation_id, owner=user, **defaults
                )
                search.title_index(
                    conversation_id=conversation.id, owner_id=user.pk, title=conversation.title,
                    new=True,
                )  # fmt: skip
                return conversation
        except IntegrityError:
            continue  # created concurrently: read it again
    raise Conflict(f"could not create conversation {conversation_id}")


@transaction.atomic
def chunks_append(
    *, conversation_id: str, messages: list[Message], turn_id: str = ""
) -> list[dict]:
    """Append messages to the log in one transaction; returns their StoredChunks.

    The conversation row is locked while its counters are bumped, so concurrent writers get
    seqs 1, 2, 3 … with no gap and no duplicate, and every message a fresh ordinal. Chunks are
    stored ``storable`` (no U+0000).
    """
    conversation = Conversation.objects.select_for_update().get(pk=conversation_id)
    seq, ordinal = conversation.last_seq, conversation.last_message_ordinal
    rows, entries = [], []
    for message in messages:
        if not message.chunks:
            continue
        ordinal += 1
        for chunk in storable(message.chunks):
            seq += 1
            rows.append(
                Chunk(
                    conversation_id=conversation_id,
                    seq=seq,
                    message=ordinal,
                    role=message.role,
                    type=chunk["type"],
                    payload=chunk,
                    turn_id=turn_id,
                    step_id=chunk.get("stepId", ""),
                )
            )
            text = search.indexed_text(chunk, message.role)
            if text is not None:
                entries.append(
                    SearchEntry(
                        conversation_id=conversation_id,
                        owner_id=conversation.owner_id,
                        seq=seq,
                        role=message.role,
                        text=text,
                    )
                )
    Chunk.objects.bulk_create(rows)
    SearchEntry.objects.bulk_create(entries)
    Conversation.objects.filter(pk=conversation_id).update(
        last_seq=seq, last_message_ordinal=ordinal, last_activity_at=timezone.now()
    )
    return [row.to_wire() for row in rows]


def messages_stamp(messages: list[Message], stored: list[dict]) -> None:
    """Give each message the seq of its last chunk in ``stored`` (what chunks_append returned
    for them, in order; empty messages get none)."""
    position = 0
    for message in messages:
        if message.chunks:
            position += len(message.chunks)
            message.seq = stored[position - 1]["seq"]


@transaction.atomic
def turn_begin(
    *, conversation_id: str, turn_id: str, model: str, worker: str, kind: str = Turn.Kind.TURN
) -> Turn:
    """Record a running turn (numbered, unless it is a compaction turn); Conflict when the
    conversation already has one."""
    conversation = Conversation.objects.select_for_update().get(pk=conversation_id)
    if Turn.objects.filter(conversation=conversation, status=Turn.Status.RUNNING).exists():
        raise Conflict("a turn is already running in this conversation")
    now = timezone.now()
    number = None if kind == Turn.Kind.COMPACTION else conversation.last_turn_number + 1
    turn = Turn.objects.create(
        id=turn_id,
        conversation=conversation,
        model=model,
        worker=worker,
        heartbeat_at=now,
        kind=kind,
        number=number,
    )
    fields = {"status": Conversation.Status.ACTIVE, "last_activity_at": now}
    if number is not None:
        fields["last_turn_number"] = number
    if not conversation.model:
        fields["model"] = model
    Conversation.objects.filter(pk=conversation_id).update(**fields)
    return turn


@transaction.atomic
def turn_seal(*, turn_id: str, metrics: TurnMetrics) -> str:
    """Seal a turn: its TurnMetrics and the sealed status commit together. Returns the turn's
    conversation id."""
    turn = Turn.objects.select_for_update().get(pk=turn_id)
    if turn.status == Turn.Status.SEALED:
        return turn.conversation_id
    now = timezone.now()
    turn.status = Turn.Status.SEALED
    turn.ended_at = now
    turn.finish_reason = metrics.finish_reason
    turn.save(update_fields=["status", "ended_at", "finish_reason"])
    turn_metrics_record(turn=turn, metrics=metrics)
    Conversation.objects.filter(pk=turn.conversation_id).exclude(
        status=Conversation.Status.CLOSED
    ).update(status=Conversation.Status.IDLE, last_activity_at=now)
    return turn.conversation_id


def conversation_set_status(*, conversation_id: str, status: str) -> None:
    Conversation.objects.filter(pk=conversation_id).update(status=status)


def conversation_update(*, conversation: Conversation, **fields) -> Conversation:
    """Set title / model / reasoning_effort / cwd / the system prompt's fields."""
    for name, value in fields.items():
        setattr(conversation, name, value)
    conversation.save(update_fields=list(fields))
    if "title" in fields:
        search.title_index(
            conversation_id=conversation.id,
            owner_id=conversation.owner_id,
            title=conversation.title,
        )
    return conversation


def queue_push(*, conversation_id: str, text: str) -> QueuedMessage:
    return QueuedMessage.objects.create(conversation_id=conversation_id, text=text)


@transaction.atomic
def queue_drain(*, conversation_id: str) -> list[str]:
    """Take every queued message of the conversation, oldest first."""
    rows = list(QueuedMessage.objects.select_for_update().filter(conversation_id=conversation_id))
    QueuedMessage.objects.filter(pk__in=[r.pk for r in rows]).delete()
    return [r.text for r in rows]


def queue_delete(*, conversation_id: str, message_id: str) -> bool:
    if not message_id.isdigit():
        return False
    deleted, _ = QueuedMessage.objects.filter(
        conversation_id=conversation_id, pk=int(message_id)
    ).delete()
    return deleted > 0

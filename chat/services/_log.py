"""The services' synchronous write primitives: conversations, the append-only chunk log, turn
rows and the queue. Private to chat.services: transports call the intents instead.

Each function is one transaction; ``chunks_append`` is the only code that assigns seqs.
"""

from __future__ import annotations

from typing import NamedTuple

from django.db import transaction
from django.utils import timezone

from chat import rawsql, search
from chat.errors import Conflict
from chat.models import (
    Chunk,
    Conversation,
    QueuedMessage,
    Turn,
)
from chat.runtime import Message, TurnMetrics
from chat.selectors import conversation_for_user, conversation_status
from metrics.services import turn_metrics_record

CONVERSATION_INSERT = rawsql.Insert(Conversation)
CHUNK_INSERT = rawsql.Insert(Chunk)
TURN_INSERT = rawsql.Insert(Turn)
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


def conversation_ensure(*, user, conversation_id: str, **defaults) -> Conversation:
    """The caller's conversation, created on first use; NotFound when someone else owns it."""
    for _ in range(3):
        conversation = conversation_for_user(
            user=user, conversation_id=conversation_id
        ) or conversation_create(user=user, conversation_id=conversation_id, **defaults)
        if conversation is not None:
            return conversation
    raise Conflict(f"could not create conversation {conversation_id}")


@transaction.atomic(savepoint=False)
def conversation_create(*, user, conversation_id: str, **defaults) -> Conversation | None:
    """Create the caller's conversation (the caller has just read that it does not exist);
    None when it was created concurrently."""
    conversation = Conversation(id=conversation_id, owner=user, **defaults)
    if not CONVERSATION_INSERT.new(CONVERSATION_INSERT.of(conversation)):
        return None
    search.title_index(
        conversation_id=conversation.id, owner_id=user.pk, title=conversation.title, new=True
    )
    return conversation


class LogCounters(NamedTuple):
    """A conversation's log counters, as a transaction that holds its row read them."""

    last_seq: int
    last_message_ordinal: int
    owner_id: int


@transaction.atomic(savepoint=False)
def chunks_append(
    *,
    conversation_id: str,
    messages: list[Message],
    turn_id: str = "",
    counters: LogCounters | None = None,
) -> list[dict]:
    """Append messages to the log in one transaction; returns their StoredChunks.

    The conversation row is locked while its counters are bumped, so concurrent writers get
    seqs 1, 2, 3 … with no gap and no duplicate, and every message a fresh ordinal. Chunks are
    stored ``storable`` (no U+0000). Inside a caller's transaction it takes no savepoint: an
    error rolls the caller's transaction back with it. ``counters``: the row's, as the
    caller's transaction has just locked and read them (``turn_begin``), so they are not read
    again. Plain statements (chat.rawsql): every turn runs this once per step.
    """
    found = counters or rawsql.one(
        'SELECT "last_seq", "last_message_ordinal", "owner_id" FROM "chat_conversation" '
        'WHERE "id" = %s' + rawsql.for_update(),
        [conversation_id],
    )
    if found is None:
        raise Conversation.DoesNotExist(conversation_id)
    seq, ordinal, owner_id = found
    now = timezone.now()
    stored, rows, entries, index = [], [], [], search.entry_insert()
    for message in messages:
        if not message.chunks:
            continue
        ordinal += 1
        for chunk in storable(message.chunks):
            seq += 1
            stored.append({"seq": seq, "role": message.role, "chunk": chunk})
            rows.append(
                CHUNK_INSERT.values(
                    now,
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
                    index.values(
                        now,
                        conversation_id=conversation_id,
                        owner_id=owner_id,
                        seq=seq,
                        role=message.role,
                        text=text,
                    )
                )
    CHUNK_INSERT.many(rows)
    index.many(entries)
    rawsql.update(
        Conversation, conversation_id, last_seq=seq, last_message_ordinal=ordinal,
        last_activity_at=now,
    )  # fmt: skip
    return stored


def messages_stamp(messages: list[Message], stored: list[dict]) -> None:
    """Give each message the seq of its last chunk in ``stored`` (what chunks_append returned
    for them, in order; empty messages get none)."""
    position = 0
    for message in messages:
        if message.chunks:
            position += len(message.chunks)
            message.seq = stored[position - 1]["seq"]


@transaction.atomic(savepoint=False)
def turn_begin(
    *,
    conversation_id: str,
    turn_id: str,
    model: str,
    worker: str,
    kind: str = Turn.Kind.TURN,
    created: Conversation | None = None,
) -> LogCounters:
    """Record a running turn (numbered, unless it is a compaction turn); Conflict when the
    conversation already has one. Returns the conversation's log counters as the transaction
    locked them, for ``chunks_append``. ``created``: the conversation, when the caller's
    transaction has just inserted it (no turn, no log), which needs no read. Plain statements
    (chat.rawsql): every turn starts here."""
    if created is not None:  # inserted by this transaction: no turn, no log, nothing to read
        last_number, current_model, running = created.last_turn_number, created.model, False
        counters = LogCounters(created.last_seq, created.last_message_ordinal, created.owner_id)
    else:
        found = rawsql.one(
            'SELECT "last_turn_number", "model", EXISTS (SELECT 1 FROM "chat_turn" '
            'WHERE "conversation_id" = %s AND "status" = %s), "last_seq", '
            '"last_message_ordinal", "owner_id" FROM "chat_conversation" '
            'WHERE "id" = %s' + rawsql.for_update(),
            [conversation_id, Turn.Status.RUNNING, conversation_id],
        )
        if found is None:
            raise Conversation.DoesNotExist(conversation_id)
        last_number, current_model, running, *locked = found
        counters = LogCounters(*locked)
    if running:
        raise Conflict("a turn is already running in this conversation")
    now = timezone.now()
    number = None if kind == Turn.Kind.COMPACTION else last_number + 1
    TURN_INSERT.one(
        TURN_INSERT.values(
            now,
            id=turn_id,
            conversation_id=conversation_id,
            model=model,
            worker=worker,
            heartbeat_at=now,
            kind=kind,
            number=number,
        )
    )
    fields = {"status": Conversation.Status.ACTIVE, "last_activity_at": now}
    if number is not None:
        fields["last_turn_number"] = number
    if not current_model:
        fields["model"] = model
    rawsql.update(Conversation, conversation_id, **fields)
    return counters


@transaction.atomic(savepoint=False)
def turn_seal(*, turn_id: str, metrics: TurnMetrics) -> tuple[str, str]:
    """Seal a turn: its TurnMetrics and the sealed status commit together. Returns the turn's
    conversation id and the conversation's status after it (idle, or closed). Plain
    statements (chat.rawsql): every turn ends here."""
    found = rawsql.one(
        'SELECT "conversation_id", "status" FROM "chat_turn" WHERE "id" = %s' + rawsql.for_update(),
        [turn_id],
    )
    if found is None:
        raise Turn.DoesNotExist(turn_id)
    conversation_id, status = found
    if status == Turn.Status.SEALED:
        return conversation_id, conversation_status(conversation_id=conversation_id)
    now = timezone.now()
    rawsql.update(
        Turn, turn_id, status=Turn.Status.SEALED, ended_at=now, finish_reason=metrics.finish_reason
    )
    turn_metrics_record(turn_id=turn_id, conversation_id=conversation_id, metrics=metrics)
    idle = rawsql.run(
        'UPDATE "chat_conversation" SET "status" = %s, "last_activity_at" = %s '
        'WHERE "id" = %s AND "status" <> %s',
        [Conversation.Status.IDLE, rawsql.at(now), conversation_id, Conversation.Status.CLOSED],
    )
    return conversation_id, Conversation.Status.IDLE if idle else Conversation.Status.CLOSED


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


@transaction.atomic(savepoint=False)
def queue_drain(*, conversation_id: str) -> list[str]:
    """Take every queued message of the conversation, oldest first (every seal asks)."""
    taken = rawsql.rows(
        'SELECT "id", "text" FROM "chat_queuedmessage" WHERE "conversation_id" = %s '
        'ORDER BY "queued_at", "id"' + rawsql.for_update(),
        [conversation_id],
    )
    if taken:
        QueuedMessage.objects.filter(pk__in=[pk for pk, _ in taken]).delete()
    return [text for _, text in taken]


def queue_delete(*, conversation_id: str, message_id: str) -> bool:
    if not message_id.isdigit():
        return False
    deleted, _ = QueuedMessage.objects.filter(
        conversation_id=conversation_id, pk=int(message_id)
    ).delete()
    return deleted > 0

"""Reads: conversations, history slices, the transcript's rows, tabs and the queue. Never writes.

Transports, page builders and the services read the database through these functions only.
``conversation_for_user`` is the one ownership check: a conversation someone else owns reads
as NotFound, exactly like one that does not exist where existence matters.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Q, QuerySet

from chat import search
from chat.errors import NotFound
from chat.models import (
    Attachment,
    Chunk,
    Conversation,
    QueuedMessage,
    SystemPromptPreset,
    Tab,
    Turn,
    UserSettings,
)
from chat.runtime import Message, TurnMetrics
from metrics.selectors import conversation_turn_metrics

# The owner of a deleted conversation, as far as reads go: no user has this id.
NO_ONE = 0


def conversation_for_user(*, user, conversation_id: str) -> Conversation | None:
    """The caller's conversation, None when it does not exist yet; NotFound if not theirs or
    deleted (a deleted id stays taken, and answers 404 for good)."""
    conversation = Conversation.objects.filter(pk=conversation_id).first()
    if conversation is not None and (
        conversation.owner_id != user.pk or conversation.deleted_at is not None
    ):
        raise NotFound.conversation(conversation_id)
    return conversation


def conversation_owner_id(*, conversation_id: str) -> int | None:
    """Who owns the conversation, None when it does not exist (yet); ``NO_ONE`` when it was
    deleted (it exists, and is no one's)."""
    row = Conversation.objects.filter(pk=conversation_id).values_list("owner_id", "deleted_at")
    found = row.first()
    if found is None:
        return None
    return NO_ONE if found[1] is not None else found[0]


def conversation_status(*, conversation_id: str) -> str:
    status = Conversation.objects.filter(pk=conversation_id).values_list("status", flat=True)
    return status.first() or Conversation.Status.IDLE


def conversation_list(
    *, user, statuses: list[str] | None = None, q: str = "", archived: bool | None = False
) -> QuerySet:
    """The user's conversations, newest activity first: not archived (``archived`` False),
    only archived (True) or both (None); never deleted ones. ``q`` matches anywhere in the
    title (any case) or the start of the id."""
    rows = Conversation.objects.filter(owner=user, deleted_at__isnull=True)
    if archived is not None:
        rows = rows.filter(archived_at__isnull=not archived)
    if statuses:
        rows = rows.filter(status__in=statuses)
    if q:
        rows = rows.filter(Q(id__startswith=q) | Q(title__icontains=q))
    return rows.order_by("-last_activity_at", "id")


# ---------------------------------------------------------------------- the log


@dataclass(frozen=True)
class HistoryWindow:
    since_seq: int = 0
    before_seq: int | None = None
    limit: int | None = None


def history_slice(*, conversation_id: str, window: HistoryWindow) -> tuple[list[dict], int]:
    """The history read (docs/protocol.md#5-http-api): the raw StoredChunks of the window and
    ``latestSeq``.

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


_TRANSCRIPT_FIELDS = ("seq", "turn_id", "message", "role", "payload")


def _transcript_rows(rows: QuerySet) -> list[dict]:
    return [{**row, "chunk": row["payload"]} for row in rows.values(*_TRANSCRIPT_FIELDS)]


@dataclass(frozen=True)
class TranscriptSnapshot:
    """The committed part of a conversation, as the transcript builds it (chat.transcript)."""

    rows: list[dict]  # {seq, turn_id, message, role, chunk}, ascending seq
    turn_metrics: list[TurnMetrics]  # of the sealed turns, in order
    seq: int  # the seq of the last row, 0 when there is none
    running: Turn | None  # the running turn, whose chunks are left out


def transcript_snapshot(*, conversation_id: str) -> TranscriptSnapshot:
    """The committed turns' rows and metrics, without the running turn's chunks.

    The running turn is read in the same query as the chunks it excludes, so a turn that
    starts meanwhile is either wholly in the snapshot or wholly left to the live replay.
    """
    running = Turn.objects.filter(conversation_id=conversation_id, status=Turn.Status.RUNNING)
    turn = running.first()
    # Also exclude the turn read above: if it seals before the chunks are read, its sealing
    # event (already on its way to the socket) is what moves it into the history.
    rows = Chunk.objects.filter(conversation_id=conversation_id).exclude(
        turn_id__in=running.values("id")
    )
    if turn is not None:
        rows = rows.exclude(turn_id=turn.id)
    picked = _transcript_rows(rows.order_by("seq"))
    return TranscriptSnapshot(
        rows=picked,
        turn_metrics=conversation_turn_metrics(conversation_id=conversation_id),
        seq=picked[-1]["seq"] if picked else 0,
        running=turn,
    )


def turn_rows(*, conversation_id: str, turn_id: str) -> tuple[list[dict], list[TurnMetrics]]:
    """One turn's transcript rows (ascending seq) and the conversation's TurnMetrics."""
    rows = _transcript_rows(
        Chunk.objects.filter(conversation_id=conversation_id, turn_id=turn_id).order_by("seq")
    )
    return rows, conversation_turn_metrics(conversation_id=conversation_id) if rows else []


def sealed_turn_count(*, conversation_id: str) -> int:
    return len(conversation_turn_metrics(conversation_id=conversation_id))


def last_context_size(*, conversation_id: str) -> int | None:
    turns = conversation_turn_metrics(conversation_id=conversation_id)
    return next((t.context_size for t in reversed(turns) if t.context_size is not None), None)


# ---------------------------------------------------------------------- turns, tabs, queue


def turn_retryable(*, conversation_id: str, turn_id: str) -> tuple[str, str] | None:
    """(the prompt, the finish reason) of a sealed turn of the conversation; None if none."""
    turn = (
        Turn.objects.filter(pk=turn_id, conversation_id=conversation_id, status=Turn.Status.SEALED)
        .values_list("finish_reason", flat=True)
        .first()
    )
    if turn is None:
        return None
    first = (
        Chunk.objects.filter(conversation_id=conversation_id, turn_id=turn_id, role="user")
        .order_by("seq")
        .values_list("payload", flat=True)
        .first()
    )
    return (first or {}).get("text", ""), turn


def user_theme(*, user) -> str:
    """The user's theme: ``system`` (the browser's), ``light`` or ``dark``."""
    theme = UserSettings.objects.filter(user=user).values_list("theme", flat=True).first()
    return theme or UserSettings.Theme.SYSTEM


def running_turn(*, conversation_id: str) -> Turn | None:
    return Turn.objects.filter(conversation_id=conversation_id, status=Turn.Status.RUNNING).first()


def tab_list(*, user) -> list[Tab]:
    """The user's tabs in order, with their conversations."""
    tabs = Tab.objects.filter(user=user, conversation__deleted_at__isnull=True)
    return list(tabs.select_related("conversation").order_by("position"))


def tab_last_seen(*, user) -> Tab | None:
    """The tab the user looked at last, else their first."""
    return Tab.objects.filter(user=user).order_by("-active", "position").first()


def conversation_forks(*, conversation_id: str) -> list[Conversation]:
    """The conversations forked from this one, oldest first (deleted ones left out)."""
    return list(
        Conversation.objects.filter(
            forked_from_id=conversation_id, deleted_at__isnull=True
        ).order_by("created_at", "id")
    )


def user_message_text(*, conversation_id: str, seq: int) -> str:
    """The text of the message whose first chunk is at ``seq`` ("" when there is none)."""
    first = Chunk.objects.filter(conversation_id=conversation_id, seq=seq).first()
    if first is None:
        return ""
    chunks = Chunk.objects.filter(conversation_id=conversation_id, message=first.message)
    return "".join(c.payload.get("text", "") for c in chunks.order_by("seq") if c.type == "text")


def preset_list(*, user) -> list[dict]:
    """The user's system prompt presets, by name."""
    return [p.to_wire() for p in SystemPromptPreset.objects.filter(owner=user).order_by("name")]


def search_hits(*, user, q: str, limit: int = 20) -> list[search.Hit]:
    """The user's best matches for ``q`` among titles and message text (chat.search)."""
    return search.search(owner_id=user.pk, q=q, limit=limit)


def queue_list(*, conversation_id: str) -> list[dict]:
    return [m.to_wire() for m in QueuedMessage.objects.filter(conversation_id=conversation_id)]


# ---------------------------------------------------------------------- attachments


def attachment_for_user(*, user, attachment_id: str) -> Attachment:
    """The caller's attachment; NotFound for someone else's exactly as for a missing one."""
    attachment = Attachment.objects.filter(pk=attachment_id, owner_id=user.pk).first()
    if attachment is None:
        raise NotFound.attachment(attachment_id)
    return attachment


def conversation_attachments(*, conversation_id: str, ids=None) -> dict[str, Attachment]:
    """The attachments a message of the conversation carried (all, or those of ``ids``).

    An attachment chunk names its file only through this: an id another conversation owns —
    an imported log, someone else's id — finds nothing.
    """
    rows = Attachment.objects.filter(conversation_id=conversation_id)
    if ids is not None:
        rows = rows.filter(pk__in=list(ids))
    return {row.pk: row for row in rows}


def turn_prompt_seq(*, conversation_id: str, turn_id: str) -> int | None:
    """The seq of the first chunk of the turn's prompt (its first user message), if any."""
    return (
        Chunk.objects.filter(conversation_id=conversation_id, turn_id=turn_id, role="user")
        .order_by("seq")
        .values_list("seq", flat=True)
        .first()
    )


def message_chunks(*, conversation_id: str, seq: int) -> list[dict]:
    """The chunks of the message whose first chunk is at ``seq`` ([] when there is none)."""
    first = Chunk.objects.filter(conversation_id=conversation_id, seq=seq).first()
    if first is None:
        return []
    chunks = Chunk.objects.filter(conversation_id=conversation_id, message=first.message)
    return list(chunks.order_by("seq").values_list("payload", flat=True))

"""Reads: conversations, history slices, the transcript's rows, tabs and the queue. Never writes.

Transports, page builders and the services read the database through these functions only.
``conversation_for_user`` is the one ownership check: a conversation someone else owns reads
as NotFound, exactly like one that does not exist where existence matters.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Q, QuerySet

from chat import rawsql, search
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
from metrics.selectors import latest_context_size, turn_metrics_by_id

# The owner of a deleted conversation, as far as reads go: no user has this id.
NO_ONE = 0


def conversation_for_user(*, user, conversation_id: str) -> Conversation | None:
    """The caller's conversation, None when it does not exist yet; NotFound if not theirs or
    deleted (a deleted id stays taken, and answers 404 for good)."""
    conversation = rawsql.get(Conversation, conversation_id)
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
    """What a provider may be sent of the log, regrouped into messages by their ordinal, each
    with the seq of its last chunk: the whole log, or from the latest compaction on (the
    messages it kept verbatim, the compaction itself, everything after it).

    Older chunks are summarized by that compaction (docs/protocol.md#24-compaction), so a
    turn of a long conversation reads only its tail.
    """
    rows = Chunk.objects.filter(conversation_id=conversation_id)
    latest = (
        Chunk.objects.filter(conversation_id=conversation_id, type="compaction")
        .order_by("-seq")
        .values_list("payload", flat=True)
        .first()
    )
    if latest is not None:
        rows = rows.filter(seq__gt=int(latest.get("upToSeq") or 0))
    messages: list[Message] = []
    current = None
    for ordinal, role, payload, seq in rows.order_by("seq").values_list(
        "message", "role", "payload", "seq"
    ):
        if ordinal != current:
            messages.append(Message(role, []))
            current = ordinal
        messages[-1].chunks.append(payload)
        messages[-1].seq = seq
    return messages


_TRANSCRIPT_FIELDS = ("seq", "turn_id", "message", "role", "payload")


def _transcript_rows(rows: QuerySet) -> list[dict]:
    return [{**row, "chunk": row["payload"]} for row in rows.values(*_TRANSCRIPT_FIELDS)]


# The web app's window of a conversation (docs/protocol.md#8-web-app-socket): the newest
# turns, at most this many turns and chunks, whichever is reached first.
WINDOW_TURNS = 30
WINDOW_CHUNKS = 1000


@dataclass(frozen=True)
class TranscriptWindow:
    """A contiguous part of the committed log, whole turns (a turn larger than the window is
    cut at a step boundary), as the transcript builds it (chat.transcript)."""

    rows: list[dict]  # {seq, turn_id, message, role, chunk}, ascending seq
    turns: dict[str, Turn]  # the visible turns, by id (number, kind)
    turn_metrics: dict[str, TurnMetrics]  # of the visible sealed turns, by turn id
    older: int | None  # the seq of the first row, when older rows exist (a beforeSeq)
    newer: int | None  # the seq of the last row, when newer committed rows exist (a sinceSeq)
    seq: int  # the seq of the conversation's last committed chunk (the running turn's left out)
    running: Turn | None  # the running turn, whose chunks are left out


def _starts_step(rows: list[dict], index: int) -> bool:
    """Whether ``rows[index]`` begins a message that is not a tool message (a step boundary:
    a window cut there shows no tool result without its call)."""
    row = rows[index]
    return row["message"] != rows[index - 1]["message"] and row["role"] != "tool"


def _window(
    rows: QuerySet, *, newest: bool, max_turns: int, max_chunks: int
) -> tuple[list[dict], bool]:
    """Whole turns from one end of ``rows``: the newest (``newest``) or the oldest ones.

    At most ``max_turns`` turns and ``max_chunks`` chunks; a turn the chunk limit cuts is
    left out, unless it is the only one: then it is cut at a step boundary. Returns the rows
    (ascending) and whether ``rows`` has more beyond them.
    """
    order = "-seq" if newest else "seq"
    loaded = _transcript_rows(rows.order_by(order)[: max_chunks + 1])
    turns: list[str] = []
    end = min(len(loaded), max_chunks)
    for index, row in enumerate(loaded[:end]):
        if row["turn_id"] not in turns:
            if len(turns) == max_turns:
                end = index
                break
            turns.append(row["turn_id"])
    picked = loaded[:end]
    if end < len(loaded) and picked and loaded[end]["turn_id"] == picked[-1]["turn_id"]:
        # The limit cut the farthest turn: leave it out, or cut the only one at a step.
        whole = [row for row in picked if row["turn_id"] != picked[-1]["turn_id"]]
        picked = whole or _cut_at_step(picked, loaded[end], newest=newest)
    if newest:
        picked.reverse()
    return picked, len(picked) < len(loaded)


def _cut_at_step(picked: list[dict], beyond: dict, *, newest: bool) -> list[dict]:
    """The rows of one turn cut by the window's limit, trimmed at its far end to a step
    boundary; ``beyond`` is the first row past that end (in ``picked``'s read order)."""
    if newest:  # descending: the cut is at the oldest end, before ``beyond``
        rows = [beyond, *reversed(picked)]
        start = next((i for i in range(1, len(rows)) if _starts_step(rows, i)), 1)
        return list(reversed(rows[start:]))
    rows = [*picked, beyond]
    stop = next((i for i in range(len(rows) - 1, 0, -1) if _starts_step(rows, i)), len(picked))
    return rows[:stop]


def transcript_window(
    *,
    conversation_id: str,
    before_seq: int | None = None,
    after_seq: int | None = None,
    at_seq: int | None = None,
    max_turns: int = WINDOW_TURNS,
    max_chunks: int = WINDOW_CHUNKS,
) -> TranscriptWindow:
    """A window of the committed turns, without the running turn's chunks.

    The newest turns; or those before ``before_seq`` (scrolling up), or after ``after_seq``
    (scrolling down), or around ``at_seq`` (half before it, half from it on). Each read is
    an index range scan of at most ``max_chunks + 1`` rows, and the turns and metrics read
    are the visible ones only, so its cost does not grow with the conversation.

    The running turn is read in the same query as the chunks it excludes, so a turn that
    starts meanwhile is either wholly in the window or wholly left to the live replay.
    """
    running_rows = Turn.objects.filter(conversation_id=conversation_id, status=Turn.Status.RUNNING)
    turn = running_rows.first()
    rows = Chunk.objects.filter(conversation_id=conversation_id).exclude(
        turn_id__in=running_rows.values("id")
    )
    if turn is not None:
        rows = rows.exclude(turn_id=turn.id)
    older = newer = None
    if at_seq is not None:
        half_turns, half_chunks = max(1, max_turns // 2), max(1, max_chunks // 2)
        before, more_before = _window(
            rows.filter(seq__lte=at_seq), newest=True, max_turns=half_turns, max_chunks=half_chunks
        )
        after, more_after = _window(
            rows.filter(seq__gt=at_seq), newest=False, max_turns=half_turns, max_chunks=half_chunks
        )
        picked = before + after
        older = picked[0]["seq"] if picked and more_before else None
        newer = picked[-1]["seq"] if picked and more_after else None
    elif after_seq is not None:
        picked, more = _window(
            rows.filter(seq__gt=after_seq), newest=False, max_turns=max_turns, max_chunks=max_chunks
        )
        newer = picked[-1]["seq"] if picked and more else None
    else:
        rows_before = rows.filter(seq__lt=before_seq) if before_seq is not None else rows
        picked, more = _window(rows_before, newest=True, max_turns=max_turns, max_chunks=max_chunks)
        older = picked[0]["seq"] if picked and more else None
    last = rows.order_by("-seq").values_list("seq", flat=True).first() or 0
    ids = list(dict.fromkeys(row["turn_id"] for row in picked))
    return TranscriptWindow(
        rows=picked,
        turns=Turn.objects.in_bulk(ids),
        turn_metrics=turn_metrics_by_id(turn_ids=ids),
        older=older,
        newer=newer,
        seq=last,
        running=turn,
    )


def turn_rows(*, conversation_id: str, turn_id: str) -> tuple[list[dict], Turn | None, dict]:
    """One turn's transcript rows (ascending seq), its Turn and its TurnMetrics by id."""
    rows = _transcript_rows(
        Chunk.objects.filter(conversation_id=conversation_id, turn_id=turn_id).order_by("seq")
    )
    turn = Turn.objects.filter(pk=turn_id, conversation_id=conversation_id).first()
    return rows, turn, turn_metrics_by_id(turn_ids=[turn_id]) if rows else {}


def turn_number(*, turn_id: str) -> int | None:
    return Turn.objects.filter(pk=turn_id).values_list("number", flat=True).first()


def last_context_size(*, conversation_id: str) -> int | None:
    """The contextSize of the conversation's latest turn that has one (a compaction turn's is
    the compacted context's)."""
    return latest_context_size(conversation_id=conversation_id)


def last_answer_text(*, conversation_id: str, before_turn: str) -> str:
    """The text of the last answer before the turn ``before_turn`` (what a continuation
    continues), "" when there is none."""
    first = (
        Chunk.objects.filter(conversation_id=conversation_id, turn_id=before_turn)
        .order_by("seq")
        .values_list("seq", flat=True)
        .first()
    )
    rows = Chunk.objects.filter(conversation_id=conversation_id, type="text", role="assistant")
    if first is not None:
        rows = rows.filter(seq__lt=first)
    payload = rows.order_by("-seq").values_list("payload", flat=True).first()
    return str(payload.get("text", "")) if payload else ""


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

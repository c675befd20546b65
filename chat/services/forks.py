"""Forks and imports: new conversations made from a copy of a log, so logs stay append-only.

Editing a message or regenerating an answer never changes a log: it forks the conversation
just before that user message (a new conversation of the same owner holding a copy of the
chunks before it) and continues there. An import builds a conversation from an export the
same way. Copied turns keep their TurnMetrics (marked copies, left out of the throughput
aggregates); every copy gets fresh turn ids, and its chunks keep their seqs, message
ordinals and contents.
"""

from __future__ import annotations

import uuid
from dataclasses import replace

from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone
from pydantic import ValidationError

from chat import search, selectors
from chat.errors import InvalidInput, NotFound
from chat.exports import DocumentIn, parse_document
from chat.models import Chunk, Conversation, SearchEntry, Turn
from chat.prompts import TemplateError, parse
from chat.runtime import TurnMetrics, new_turn_id
from chat.services.attachments import attachments_again, attachments_fork
from chat.services.events import publish_on_commit, user_group, write
from chat.services.inputs import ConversationId, Seq, check
from chat.services.turns import turn_start
from chat.services.workspace import conversation_dir
from metrics.selectors import conversation_turn_metrics
from metrics.services import turn_metrics_record

BEFORE_SEQ_RULE = "must be the seq of a user message, or the conversation's latest seq + 1"


async def conversation_fork(
    *, user, conversation_id: str, before_seq: int | None = None
) -> Conversation:
    """Fork the conversation before ``before_seq`` (None: after its last committed chunk).

    The fork is a new conversation of the same owner with a copy of the chunks before that
    seq (seqs 1, 2, 3 … as in the source), the source's settings and system prompt, and
    ``forked_from``/``forked_at_seq`` naming where it came from. While a turn runs in the
    source, only its committed steps are copied. ``before_seq`` must start a user message (or
    be one past the end), so no message and no tool call is cut from its result.
    """
    check("conversationId", ConversationId, conversation_id)
    if before_seq is not None:
        before_seq = check("beforeSeq", Seq, before_seq)
    return await write(_do_fork, user=user, conversation_id=conversation_id, before_seq=before_seq)


async def conversation_regenerate(*, user, conversation_id: str, seq: int) -> Conversation:
    """Regenerate the answer to the user message at ``seq``: fork before it and run the same
    message again in the fork (also for a turn that failed or was stopped). The fork."""
    fork = await conversation_fork(user=user, conversation_id=conversation_id, before_seq=seq)
    text = await database_sync_to_async(selectors.user_message_text)(
        conversation_id=conversation_id, seq=seq
    )
    attachments = await write(
        attachments_again, user=user, conversation_id=conversation_id, seq=seq
    )
    await turn_start(
        user=user, conversation_id=fork.id, message=text, attachments=attachments or None
    )
    return fork


def _do_fork(*, user, conversation_id: str, before_seq: int | None) -> Conversation:
    source = selectors.conversation_for_user(user=user, conversation_id=conversation_id)
    if source is None:
        raise NotFound.conversation(conversation_id)
    # The row lock chunks_append takes: the copy is a committed prefix of the log.
    source = Conversation.objects.select_for_update().get(pk=source.pk)
    end = source.last_seq + 1
    cut = end if before_seq is None else before_seq
    if cut > end:
        raise InvalidInput(f"must be at most {end} (the latest seq + 1)", field="beforeSeq")
    if cut < end:
        at = Chunk.objects.filter(conversation=source, seq__in=(cut - 1, cut)).order_by("seq")
        rows = list(at.values_list("seq", "message", "role"))
        starts_message = rows[-1][2] == "user" and (len(rows) == 1 or rows[0][1] != rows[1][1])
        if not starts_message:
            raise InvalidInput(BEFORE_SEQ_RULE, field="beforeSeq")
    chunks = list(
        Chunk.objects.filter(conversation=source, seq__lt=cut)
        .order_by("seq")
        .values_list("seq", "message", "role", "type", "payload", "turn_id", "step_id")
    )
    fork = Conversation.objects.create(
        id=str(uuid.uuid4()),
        owner=user,
        title=source.title,
        model=source.model,
        reasoning_effort=source.reasoning_effort,
        cwd=source.cwd,
        system_prompt_template=source.system_prompt_template,
        system_prompt=source.system_prompt,
        system_prompt_resolved_for=source.system_prompt_resolved_for,
        forked_from=source,
        forked_at_seq=cut,
        last_seq=len(chunks),
        last_message_ordinal=chunks[-1][1] if chunks else 0,
    )
    # Turns wholly in the copy keep their row and metrics; a turn cut by the fork (or still
    # running) is only its chunks.
    turn_ids = {row[5] for row in chunks if row[5]}
    cut_turns = set(
        Chunk.objects.filter(conversation=source, seq__gte=cut, turn_id__in=turn_ids)
        .values_list("turn_id", flat=True)
        .distinct()
    )
    metrics = {m.turn_id: m for m in conversation_turn_metrics(conversation_id=source.id)}
    renamed = {turn_id: new_turn_id() for turn_id in sorted(turn_ids)}
    for turn in Turn.objects.filter(conversation=source, id__in=turn_ids).order_by("started_at"):
        if turn.status != Turn.Status.SEALED or turn.id in cut_turns:
            continue
        _turn_copy(
            fork,
            renamed[turn.id],
            turn.model,
            turn.finish_reason,
            metrics.get(turn.id),
            kind=turn.kind,
            number=turn.number,
        )
    _turns_numbered(fork)
    # The fork's own copies of the attachments its chunks name (chat.services.attachments).
    payloads = attachments_fork(source=source, fork=fork, payloads=[row[4] for row in chunks])
    Chunk.objects.bulk_create(
        Chunk(
            conversation=fork,
            seq=seq,
            message=message,
            role=role,
            type=kind,
            payload=payload,
            turn_id=renamed.get(turn_id, ""),
            step_id=step_id,
        )  # fmt: skip
        for (seq, message, role, kind, _, turn_id, step_id), payload in zip(
            chunks, payloads, strict=True
        )
    )
    SearchEntry.objects.bulk_create(
        SearchEntry(conversation=fork, owner=user, seq=seq, role=role, text=text)
        for seq, role, text in SearchEntry.objects.filter(
            conversation=source, seq__lt=cut
        ).values_list("seq", "role", "text")
    )
    _conversations_changed(user)
    return fork


def _turn_copy(
    conversation: Conversation,
    turn_id: str,
    model: str,
    finish_reason: str,
    metrics: TurnMetrics | None,
    *,
    kind: str = Turn.Kind.TURN,
    number: int | None = None,
) -> None:
    """A sealed copy of a turn: its number in the source (a compaction turn has none)."""
    now = timezone.now()
    turn = Turn.objects.create(
        id=turn_id,
        conversation=conversation,
        status=Turn.Status.SEALED,
        ended_at=now,
        finish_reason=finish_reason,
        model=model,
        kind=kind,
        number=number if kind == Turn.Kind.TURN else None,
    )
    if metrics is not None:
        turn_metrics_record(
            turn_id=turn.id, conversation_id=turn.conversation_id,
            metrics=replace(metrics, turn_id=turn_id), copied=True,
        )  # fmt: skip


def _turns_numbered(conversation: Conversation) -> None:
    """The copy's next turn is numbered after the last one it holds."""
    last = (
        Turn.objects.filter(conversation=conversation, number__isnull=False)
        .order_by("-number")
        .values_list("number", flat=True)
        .first()
    )
    conversation.last_turn_number = last or 0
    conversation.save(update_fields=["last_turn_number"])


def _conversations_changed(user) -> None:
    publish_on_commit(user_group(user.pk), {"type": "user.conversations"})


# ---------------------------------------------------------------------- import


async def conversation_import(*, user, raw: bytes) -> Conversation:
    """A new conversation of the user from an export document (chat.exports): a new id, the
    same chunks with the same seqs, the turns with their metrics, the settings and system
    prompt. InvalidInput naming the first problem for a file that is not a valid export
    (too large, not JSON, another version, seq gaps, unknown chunk types, a cwd outside the
    user's workspace, someone else's conversation as ``forkedFrom`` …); nothing is stored
    then. The whole import is one transaction."""
    limit = settings.DISPATCH_MAX_IMPORT_BYTES
    if len(raw) > limit:
        raise InvalidInput(f"the file is too large: at most {limit:,} bytes")
    try:
        document = parse_document(raw)
    except ValidationError as exc:
        raise InvalidInput(_problem(exc)) from None
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    conversation = document.conversation
    conversation_dir(owner_id=user.pk, cwd=conversation.cwd)  # the cwd stays in the workspace
    if conversation.systemPrompt.template is not None:
        try:
            parse(conversation.systemPrompt.template)
        except TemplateError as exc:
            raise InvalidInput(f"conversation.systemPrompt.template: {exc}") from None
    return await write(_do_import, user=user, document=document)


def _do_import(*, user, document: DocumentIn) -> Conversation:
    info = document.conversation
    forked_from, forked_at = None, None
    if info.forkedFrom is not None:
        source = Conversation.objects.filter(pk=info.forkedFrom.conversationId).first()
        if source is not None and (source.owner_id != user.pk or source.deleted_at):
            raise InvalidInput(
                f"conversation {info.forkedFrom.conversationId} is not yours",
                field="conversation.forkedFrom",
            )
        if source is not None:
            forked_from, forked_at = source, info.forkedFrom.seq
    chunks = document.chunks
    conversation = Conversation.objects.create(
        id=str(uuid.uuid4()),
        owner=user,
        title=info.title,
        model=info.model,
        reasoning_effort=info.reasoningEffort,
        cwd=info.cwd,
        system_prompt_template=info.systemPrompt.template,
        system_prompt=info.systemPrompt.prompt,
        # Resolved for this model and cwd: the next turn sends the same prompt.
        system_prompt_resolved_for=f"{info.model}\n{info.cwd}",
        forked_from=forked_from,
        forked_at_seq=forked_at,
        last_seq=len(chunks),
        last_message_ordinal=chunks[-1].message if chunks else 0,
    )
    renamed = {turn.turnId: new_turn_id() for turn in document.turns}
    number = 0
    for turn in document.turns:
        metrics = turn.metrics.typed() if turn.metrics is not None else None
        finish = turn.finishReason or ("interrupted" if turn.status == "running" else "")
        kind = Turn.Kind.COMPACTION if finish == "compacted" else Turn.Kind.TURN
        if metrics is not None and metrics.kind == Turn.Kind.COMPACTION:
            kind = Turn.Kind.COMPACTION
        number += kind == Turn.Kind.TURN
        _turn_copy(
            conversation,
            renamed[turn.turnId],
            turn.model,
            finish,
            metrics,
            kind=kind,
            number=number,
        )
    _turns_numbered(conversation)
    Chunk.objects.bulk_create(
        (
            Chunk(
                conversation=conversation,
                seq=chunk.seq,
                message=chunk.message,
                role=chunk.role,
                type=chunk.chunk["type"],
                payload=chunk.chunk,
                turn_id=renamed.get(chunk.turnId, ""),
                step_id=chunk.chunk.get("stepId", "") if chunk.turnId else "",
            )
            for chunk in chunks
        ),
        batch_size=2000,
    )
    entries = []
    for chunk in chunks:
        text = search.indexed_text(chunk.chunk, chunk.role)
        if text is not None:
            entries.append(
                SearchEntry(
                    conversation=conversation,
                    owner=user,
                    seq=chunk.seq,
                    role=chunk.role,
                    text=text,
                )  # fmt: skip
            )
    SearchEntry.objects.bulk_create(entries, batch_size=2000)
    search.title_index(conversation_id=conversation.id, owner_id=user.pk, title=info.title)
    _conversations_changed(user)
    return conversation


def _problem(error: ValidationError) -> str:
    """Pydantic's first error as ``<where>: <problem>`` (``chunks[3].seq: …``)."""
    first = error.errors()[0]
    where = ""
    for part in first["loc"]:
        where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else str(part))
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "literal_error" and first["loc"] and first["loc"][-1] == "format":
        message = "expected 'dispatch.conversation' (a Dispatch conversation export)"
    if not where:
        return message
    return (
        f"{where}.{message}"
        if ": " in message and not message.startswith(" ")
        else (f"{where}: {message}")
    )

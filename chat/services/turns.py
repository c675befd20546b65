"""Turns: start and stop — a turn runs as an asyncio task of this process.

A turn is detached from the request or socket that started it; the database is the source
of truth and channel-layer events are a notification path (docs/protocol.md#4-the-turn).
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import logging
import uuid
from dataclasses import dataclass

from channels.db import database_sync_to_async
from django.db import DatabaseError

from chat import observe, selectors
from chat.config import get_config
from chat.errors import Conflict, DomainError, InvalidInput, NotFound, Unavailable
from chat.models import DEFAULT_REASONING_EFFORT, Conversation, Turn
from chat.providers import ResolvedModel, UnknownModel, get_catalog
from chat.ratelimit import turn_rate_check
from chat.running import RunningTurn, notify, running_turns
from chat.runtime import (
    Message,
    Provider,
    TurnConfig,
    TurnMetrics,
    TurnPorts,
    TurnRunner,
    new_turn_id,
)
from chat.services import _log
from chat.services.attachments import (
    attachments_again,
    attachments_check,
    attachments_names,
    attachments_send,
)
from chat.services.events import (
    conversation_group,
    publish_on_commit,
    storage_failure,
    user_group,
    write,
)
from chat.services.inputs import (
    ConversationId,
    Cwd,
    MessageText,
    ModelName,
    PromptText,
    ReasoningEffort,
    TurnId,
    check,
)
from chat.services.prompts import check_template, prompt_settle, system_prompt_for_turn
from chat.services.recovery import heartbeat_loop
from chat.services.vision import ImagesForModel
from chat.services.workspace import conversation_dir, conversation_dir_ready
from chat.signals import COMPACTION_ENDS, compaction_report
from chat.tools import get_tool_registry

log = logging.getLogger(__name__)

# Seconds between attempts to seal a turn whose database refuses the write; the last one
# repeats for as long as the process lives.
SEAL_RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 5.0)
SHUTTING_DOWN = "this server is shutting down: send again and another server will take it"


# The prompt of a Continue (docs/protocol.md#411-continue): the model picks up its cut answer.
CONTINUE_PROMPT = (
    "Continue your previous answer exactly where it stopped. Do not repeat anything you "
    "already wrote and do not comment on the interruption."
)


@dataclass(frozen=True)
class _TurnRequest:
    """A checked request to start a turn (or, ``kind="compaction"``, a manual compaction)."""

    conversation_id: str
    message: str
    model: str | None = None
    # No model named: the conversation's own, if it has one (else the resolved default).
    own_model: bool = False
    reasoning_effort: str | None = None
    cwd: str | None = None
    kind: str = Turn.Kind.TURN
    continuation: bool = False
    attachments: tuple[str, ...] = ()
    system_prompt: str | None = None  # a template for the conversation (chat.prompts)


async def turn_start(
    *,
    user,
    conversation_id: str | None,
    message: str,
    model: str | None = None,
    reasoning_effort: str | None = None,
    cwd: str | None = None,
    attachments: list[str] | None = None,
    system_prompt: str | None = None,
) -> RunningTurn:
    """Start a turn and return it; ``listen()`` on it yields every event from the first.

    ``conversation_id`` None mints a new conversation. ``attachments`` are ids of the user's
    unsent attachments (chat.services.attachments); with some, ``message`` may be empty.
    ``system_prompt``, a template, becomes the conversation's (as
    ``conversation_set_system_prompt``). Raises InvalidInput (bad fields, an unknown model, a
    cwd outside the user's workspace, too many or already sent attachments, a template that
    does not parse) before anything is stored, NotFound for someone else's conversation or
    attachment, Conflict when a turn already runs in the conversation, RateLimited when the
    user started too many turns lately.
    """
    attachment_ids = (
        await attachments_check(user=user, attachment_ids=attachments) if attachments else ()
    )
    request = _TurnRequest(
        conversation_id=str(uuid.uuid4())
        if conversation_id is None
        else check("conversationId", ConversationId, conversation_id),
        message=check("message", PromptText if attachment_ids else MessageText, message),
        model=None if model is None else check("model", ModelName, model),
        own_model=model is None,
        reasoning_effort=None
        if reasoning_effort is None
        else check("reasoningEffort", ReasoningEffort, reasoning_effort),
        cwd=None if cwd is None else check("cwd", Cwd, cwd),
        attachments=attachment_ids,
        system_prompt=None
        if system_prompt is None
        else check_template("systemPrompt", system_prompt),
    )
    if request.cwd:
        conversation_dir(owner_id=user.pk, cwd=request.cwd)
    turns_accepted()
    # The opening transaction checks the owner (NotFound for someone else's conversation) and,
    # without a model, whether the conversation has one of its own: no round trip before it.
    default = get_catalog().default_model
    try:
        resolved = await resolve_model(request.model or default)
    except InvalidInput:
        if request.model is not None or conversation_id is None:
            raise
        # The default is unavailable; the conversation may still have a model of its own.
        existing = await database_sync_to_async(selectors.conversation_for_user)(
            user=user, conversation_id=request.conversation_id
        )
        resolved = await resolve_model(existing.model if existing and existing.model else default)
    await turn_rate_check(user=user)
    return await _launch(user=user, request=request, resolved=resolved)


async def turn_continue(*, user, conversation_id: str) -> RunningTurn:
    """Start a turn that asks the model to continue its last answer (after a ``length`` cut),
    with the conversation's model and settings. NotFound for an unknown (or someone else's)
    conversation, InvalidInput for one with nothing to continue; otherwise refused as
    ``turn_start`` refuses."""
    check("conversationId", ConversationId, conversation_id)
    conversation = await database_sync_to_async(selectors.conversation_for_user)(
        user=user, conversation_id=conversation_id
    )
    if conversation is None:
        raise NotFound.conversation(conversation_id)
    if conversation.last_turn_number == 0:
        raise InvalidInput("there is no answer to continue in this conversation")
    if conversation_id in running_turns.turns:
        raise Conflict("a turn is already running in this conversation")
    turns_accepted()
    resolved = await resolve_model(conversation.model or get_catalog().default_model)
    await turn_rate_check(user=user)
    request = _TurnRequest(
        conversation_id=conversation_id, message=CONTINUE_PROMPT, continuation=True
    )
    return await _launch(user=user, request=request, resolved=resolved)


async def compaction_start(*, user, conversation: Conversation) -> RunningTurn:
    """Start a manual compaction of a conversation known to be the user's (a compaction turn,
    chat.services.compaction checks the rest)."""
    if conversation.pk in running_turns.turns:
        raise Conflict("a turn is already running in this conversation")
    turns_accepted()
    resolved = await resolve_model(conversation.model or get_catalog().default_model)
    request = _TurnRequest(conversation_id=conversation.pk, message="", kind=Turn.Kind.COMPACTION)
    return await _launch(user=user, request=request, resolved=resolved)


def turns_accepted() -> None:
    """Unavailable when this worker takes no new turns (it drains before exiting)."""
    if running_turns.draining:
        raise Unavailable(SHUTTING_DOWN)


RETRYABLE_FINISHES = ("error", "interrupted")


async def turn_retry(*, user, conversation_id: str, turn_id: str) -> RunningTurn:
    """Send a failed turn's prompt again, as a new turn with the conversation's settings; the
    failed turn stays in the log. NotFound for an unknown turn (or someone else's
    conversation), InvalidInput for a turn that did not fail; then as ``turn_start``."""
    check("conversationId", ConversationId, conversation_id)
    turn_id = check("turnId", TurnId, turn_id)
    conversation = await database_sync_to_async(selectors.conversation_for_user)(
        user=user, conversation_id=conversation_id
    )
    found = (
        await database_sync_to_async(selectors.turn_retryable)(
            conversation_id=conversation_id, turn_id=turn_id
        )
        if conversation is not None
        else None
    )
    if found is None:
        raise NotFound(f"turn not found: {turn_id}")
    prompt, finish = found
    seq = await database_sync_to_async(selectors.turn_prompt_seq)(
        conversation_id=conversation_id, turn_id=turn_id
    )
    if finish not in RETRYABLE_FINISHES or seq is None:
        raise InvalidInput("only a failed turn can be retried", field="turnId")
    # The prompt's attachments go again too (as copies: an attachment is sent once).
    attachments = await write(
        attachments_again, user=user, conversation_id=conversation_id, seq=seq
    )
    if not prompt and not attachments:
        raise InvalidInput("only a failed turn can be retried", field="turnId")
    return await turn_start(
        user=user, conversation_id=conversation_id, message=prompt, attachments=attachments or None
    )


async def resolve_model(name: str) -> ResolvedModel:
    """The catalog's model of that name; InvalidInput (field ``model``) when there is none."""
    try:
        return await get_catalog().resolve(name)
    except UnknownModel as exc:
        raise InvalidInput(str(exc)) from exc


async def turn_stop(*, user, conversation_id: str) -> bool:
    """Abort the conversation's running turn, wherever it runs; whether one was. Idempotent."""
    check("conversationId", ConversationId, conversation_id)
    conversation = await database_sync_to_async(selectors.conversation_for_user)(
        user=user, conversation_id=conversation_id
    )
    if conversation is None:
        return False
    return await abort_running(conversation_id)


async def abort_running(conversation_id: str) -> bool:
    """Abort the conversation's running turn, here or in its worker; whether one runs."""
    if running_turns.abort(conversation_id):
        return True
    turn = await database_sync_to_async(selectors.running_turn)(conversation_id=conversation_id)
    if turn is None or not turn.worker:
        return False
    await worker_start()
    await running_turns.request_stop(owner=turn.worker, conversation_id=conversation_id)
    return True


async def worker_start() -> str:
    """Start this process's worker services (channel listener, heartbeat); its channel name."""
    return await running_turns.ensure_started(heartbeat_loop)


async def turn_runs(conversation_id: str) -> bool:
    """Whether a turn runs in the conversation, in this process or another."""
    return conversation_id in running_turns.turns or bool(
        await database_sync_to_async(selectors.running_turn)(conversation_id=conversation_id)
    )


async def status_publish(*, conversation_id: str, status: str) -> None:
    """Store a conversation status and tell everyone watching it."""
    await write(_status_set, conversation_id=conversation_id, status=status)


def _status_set(*, conversation_id: str, status: str) -> None:
    _log.conversation_set_status(conversation_id=conversation_id, status=status)
    status_changed(conversation_id=conversation_id, status=status)


def status_changed(*, conversation_id: str, status: str) -> None:
    """Announce, once committed, a status the transaction stored."""
    publish_on_commit(conversation_group(conversation_id), _status_message(conversation_id, status))


async def status_notify(*, conversation_id: str, status: str) -> None:
    """Announce a status already committed."""
    await notify(conversation_group(conversation_id), _status_message(conversation_id, status))


def _status_message(conversation_id: str, status: str) -> dict:
    return {"type": "chat.status", "conversation": conversation_id, "status": status}


# ---------------------------------------------------------------------- running a turn


class _OwnModel(Exception):
    """A turn started without a model (``own_model``), in a conversation whose own model is not
    the one resolved for it (the default): resolve this one and open the turn again."""

    def __init__(self, name: str):
        super().__init__(name)
        self.name = name


def _turn_open(*, user, request: _TurnRequest, resolved: ResolvedModel, turn_id: str, worker: str):
    """One transaction: the conversation (created or updated), the running Turn row, the
    ``active`` status and the attachments given to the new message (their chunks); then the
    history the turn starts from, its working directory and the size the last turn measured
    (the base of the context budget's estimates). Raises _OwnModel, having written nothing,
    for an ``own_model`` request in a conversation whose own model is not ``resolved``."""
    title = request.message.strip() or ", ".join(
        attachments_names(user=user, ids=request.attachments)
    )
    defaults = {"title": _log.default_title(title), "model": resolved.name}
    if request.reasoning_effort:
        defaults["reasoning_effort"] = request.reasoning_effort
    if request.cwd:
        defaults["cwd"] = request.cwd
    whose = {"user": user, "conversation_id": request.conversation_id}
    existing = selectors.conversation_for_user(**whose)
    if request.own_model and existing and existing.model and existing.model != resolved.name:
        raise _OwnModel(existing.model)  # before anything is written
    created = None if existing else _log.conversation_create(**whose, **defaults)
    conversation = existing or created or _log.conversation_ensure(**whose, **defaults)
    updates = {}
    if request.model and conversation.model != resolved.name:
        updates["model"] = resolved.name
    if request.reasoning_effort and conversation.reasoning_effort != request.reasoning_effort:
        updates["reasoning_effort"] = request.reasoning_effort
    if request.cwd and conversation.cwd != request.cwd:
        updates["cwd"] = request.cwd
    if request.system_prompt is not None:
        updates["system_prompt_template"] = request.system_prompt
        updates["system_prompt_resolved_for"] = ""  # resolved for this turn
    if updates:
        _log.conversation_update(conversation=conversation, **updates)
    counters = _log.turn_begin(
        conversation_id=conversation.id,
        turn_id=turn_id,
        model=resolved.name,
        worker=worker,
        kind=request.kind,
        created=created,
    )
    status_changed(conversation_id=conversation.id, status=Conversation.Status.ACTIVE)
    if existing is None:
        publish_on_commit(
            user_group(user.pk), {"type": "conversation.open", "conversation": conversation.id}
        )
    # A conversation's seq counter says whether it has a log to read (a new one has none).
    history = (
        selectors.history_messages(conversation_id=conversation.id) if conversation.last_seq else []
    )
    cwd = conversation_dir_ready(owner_id=conversation.owner_id, cwd=conversation.cwd)
    size = selectors.last_context_size(conversation_id=conversation.id) if history else None
    chunks = (
        attachments_send(
            user=user, conversation=conversation, attachment_ids=request.attachments, cwd=cwd
        )
        if request.attachments
        else []
    )
    # The turn's first append (docs/protocol.md#2-chunks-and-the-log), in this transaction:
    # the turn needs no round trip of its own before it calls the model (TurnPorts.persist_user
    # only stamps the runtime's copy with the seq). The runtime builds the same message from
    # the config. A compaction turn has no user message.
    user_seq = None
    if request.kind == Turn.Kind.TURN:
        continuation = {"continuation": True} if request.continuation else {}
        text = {"type": "text", "text": request.message, **continuation}
        stored = _log.chunks_append(
            conversation_id=conversation.id,
            messages=[Message("user", [text, *chunks])],
            turn_id=turn_id,
            counters=counters,
        )
        user_seq = stored[-1]["seq"]
    prompt_settle(conversation)
    return conversation, history, cwd, chunks, size, user_seq


async def _launch(*, user, request: _TurnRequest, resolved: ResolvedModel) -> RunningTurn:
    worker = await worker_start()
    turn_id = new_turn_id()
    conversation_id = request.conversation_id
    if conversation_id in running_turns.turns:
        # Someone else's conversation is not found, running or not (its owner is not always
        # checked yet: turn_start leaves it to the opening transaction).
        await database_sync_to_async(selectors.conversation_for_user)(
            user=user, conversation_id=conversation_id
        )
        raise Conflict("a turn is already running in this conversation")
    running = RunningTurn(conversation_id=conversation_id, turn_id=turn_id)
    running_turns.turns[conversation_id] = running  # claim before awaiting: no double start
    try:
        for _ in range(3):  # the conversation's own model may change meanwhile: try again
            try:
                conversation, history, cwd, attachments, size, user_seq = await write(
                    _turn_open, user=user, request=request, resolved=resolved,
                    turn_id=turn_id, worker=worker,
                )  # fmt: skip
                break
            except _OwnModel as own:
                resolved = await resolve_model(own.name)
        else:
            raise Conflict("the conversation's model changed while the turn started")
    except BaseException:
        running_turns.turns.pop(conversation_id, None)
        raise
    try:
        system_prompt = await system_prompt_for_turn(conversation=conversation)
    except Exception:  # never a broken turn: the prompt stored before, if any
        log.exception("conversation %s: the system prompt could not be resolved", conversation_id)
        system_prompt = conversation.system_prompt
    tools = get_tool_registry()
    await tools.start()
    runtime = get_config().runtime
    turn_config = TurnConfig(
        conversation_id=conversation_id,
        turn_id=turn_id,
        prompt=request.message,
        history=history,
        attachments=attachments,
        model=resolved.name,
        provider_model=resolved.provider_model,
        reasoning_effort=conversation.reasoning_effort or DEFAULT_REASONING_EFFORT,
        cwd=cwd,
        max_steps=runtime.max_steps,
        retry_delays=runtime.retry_delays,
        kind=request.kind,
        continuation=request.continuation,
        context_size=size,
        system_prompt=system_prompt,
        **context_settings(conversation, resolved),
    )
    provider = ImagesForModel(
        resolved.provider, conversation_id=conversation_id, vision=resolved.vision
    )
    # A compaction turn runs no tool, but its cut leaves room for their descriptions.
    ports = _ports(running, resolved, provider, tools.tools(), user_seq=user_seq)
    ports.observer = observe.turn_observer(turn_config, system=resolved.kind, tools=ports.tools)
    running.runner = TurnRunner(turn_config, ports)
    # A fresh context: the turn outlives the request that starts it, so it must not inherit
    # the request's thread-sensitive executor (asgiref), which dies with the request.
    running.task = asyncio.get_running_loop().create_task(
        _drive(running), context=contextvars.Context()
    )
    return running


def compact_threshold(conversation: Conversation | None) -> int:
    """The conversation's compaction threshold (%), else the config's default."""
    threshold = conversation.compact_threshold if conversation is not None else None
    return get_config().compaction.threshold if threshold is None else threshold


def context_settings(conversation: Conversation, resolved: ResolvedModel) -> dict:
    """The TurnConfig fields of the context budget (docs/protocol.md#410-the-context-budget):
    the model's window, the answer's limit (the credential's, else ``[runtime]``'s) and the
    conversation's compaction settings."""
    config = get_config()
    return {
        "context_window": resolved.context_window,
        "max_tokens": resolved.max_tokens or config.runtime.max_tokens,
        "compact_threshold": compact_threshold(conversation) / 100,
        "keep_messages": config.compaction.keep_messages,
        "summary_max_tokens": config.compaction.summary_max_tokens,
    }


def _ports(
    running: RunningTurn,
    resolved: ResolvedModel,
    provider: Provider,
    tools,
    *,
    user_seq: int | None,
) -> TurnPorts:
    conversation_id, turn_id = running.conversation_id, running.turn_id

    async def emit(event: dict) -> None:
        event = _log.storable(event)  # as its chunks are stored: live and log stay equal
        await running_turns.publish(running, event)
        if event["type"] == "status":
            await status_publish(conversation_id=conversation_id, status=event["status"])
        elif event["type"] in COMPACTION_ENDS:
            compaction_report(model=resolved.name, event=event)

    async def persist(messages: list[Message]) -> None:
        try:
            stored = await database_sync_to_async(_log.chunks_append)(
                conversation_id=conversation_id, messages=messages, turn_id=turn_id
            )
        except DatabaseError as exc:  # the turn's error event says what, never the SQL
            log.warning("turn %s: a write failed: %s", turn_id, exc)
            raise storage_failure(exc) from exc
        _log.messages_stamp(messages, stored)

    async def persist_user(message: Message) -> None:
        """Stored with the Turn row (``_turn_open``): only its seq is given to it here."""
        message.seq = user_seq

    async def drain() -> list[str]:
        return await write(queue_take, conversation_id=conversation_id)

    async def seal(metrics: TurnMetrics) -> None:
        # A turn must end sealed: outlast a database that is locked, full, read-only or gone
        # for as long as this process lives, rather than leave the turn running. A stop or
        # close wakes the next attempt; if that fails too, the turn's NDJSON streams end now
        # (its subscribers still get turn-sealed once the seal commits).
        for attempt in itertools.count():
            try:
                running.closing = await write(_turn_close, turn_id=turn_id, metrics=metrics)
                return
            except (Unavailable, DatabaseError) as exc:
                if running.stop_requested:
                    running.end_streams()
                delay = SEAL_RETRY_DELAYS[min(attempt, len(SEAL_RETRY_DELAYS) - 1)]
                log.warning(
                    "conversation %s turn %s: sealing failed (%s); retrying in %ss",
                    conversation_id, turn_id, exc, delay,
                )  # fmt: skip
                await running.pause(delay)

    return TurnPorts(
        provider=provider,
        emit=emit,
        persist_user=persist_user,
        persist_step=persist,
        drain_queue=drain,
        seal=seal,
        tools=tools,
        count_tokens=getattr(resolved.provider, "count_tokens", None),
    )


def _turn_close(*, turn_id: str, metrics: TurnMetrics) -> tuple[str, list[str]]:
    """Seal the turn; the conversation's status then, and the queue to carry into a new turn
    (taken in the same transaction; nothing is carried into a closed conversation)."""
    conversation_id, status = _log.turn_seal(turn_id=turn_id, metrics=metrics)
    if status == Conversation.Status.CLOSED:
        return status, []
    return status, queue_take(conversation_id=conversation_id)


def queue_take(*, conversation_id: str) -> list[str]:
    """Every queued text, oldest first; the queue's watchers hear that it emptied."""
    taken = _log.queue_drain(conversation_id=conversation_id)
    if taken:
        queue_changed(conversation_id=conversation_id, queue=[])
    return taken


def queue_changed(*, conversation_id: str, queue: list[dict]) -> None:
    """Announce, once committed, the conversation's queue as the transaction left it."""
    publish_on_commit(
        conversation_group(conversation_id),
        {"type": "chat.queue", "conversation": conversation_id, "queue": queue},
    )


async def _drive(running: RunningTurn) -> None:
    """Run the turn, release the conversation, then carry the queue into a new turn."""
    conversation_id = running.conversation_id
    try:
        await running.runner.run()
    except Exception:
        log.exception("conversation %s turn %s crashed", conversation_id, running.turn_id)
    finally:
        running_turns.turns.pop(conversation_id, None)
    if running.closing is None:  # never sealed: recovery will seal it
        return
    # After turn-sealed, as every seal announces it (recovery's too).
    status, queued = running.closing
    await status_notify(conversation_id=conversation_id, status=status)
    if queued:
        try:
            await carry(conversation_id, "\n\n".join(queued))
        except DomainError as exc:
            log.warning("conversation %s: queued text not carried: %s", conversation_id, exc)


async def carry(conversation_id: str, text: str) -> RunningTurn | None:
    """Start a turn with queued text, as the conversation's owner; None when another turn
    started first (the text is queued again for that turn's next boundary)."""
    conversation = await database_sync_to_async(Conversation.objects.select_related("owner").get)(
        pk=conversation_id
    )
    catalog = get_catalog()
    try:
        resolved = await resolve_model(conversation.model or catalog.default_model)
    except InvalidInput:  # the model left the config: the text is not lost for it
        log.warning(
            "conversation %s: its model %r is gone; queued text goes to %s",
            conversation_id, conversation.model, catalog.default_model,
        )  # fmt: skip
        resolved = await resolve_model(catalog.default_model)
    try:
        request = _TurnRequest(conversation_id=conversation_id, message=text)
        return await _launch(user=conversation.owner, request=request, resolved=resolved)
    except DomainError as exc:
        # Queued again: for the turn that started first, or until the conversation is usable
        # again (e.g. its cwd can be created); never lost.
        await database_sync_to_async(_log.queue_push)(conversation_id=conversation_id, text=text)
        if isinstance(exc, Conflict):
            return None
        raise

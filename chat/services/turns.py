"""Turns: start, stop, close, queue — a turn runs as an asyncio task of this process.

A turn is detached from the request or socket that started it; the database is the source
of truth and channel-layer events are a notification path.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from dataclasses import dataclass
from pathlib import Path

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import OperationalError, transaction

from chat.models import (
    DEFAULT_REASONING_EFFORT,
    Conversation,
    Turn,
    group_name_for,
)
from chat.ratelimit import turn_rate_check
from chat.registry import RunningTurn, notify, registry
from chat.runtime import Message, TurnConfig, TurnMetrics, TurnPorts, TurnRunner, new_turn_id
from chat.selectors import conversation_for_user, history_messages, queue_list
from chat.services.errors import Conflict, InvalidInput
from chat.services.log import (
    chunks_append,
    conversation_ensure,
    conversation_set_status,
    conversation_update,
    default_title,
    queue_add,
    queue_cancel,
    queue_drain,
    turn_begin,
    turn_seal,
)
from chat.services.recovery import heartbeat_loop

log = logging.getLogger(__name__)

# Seconds between attempts to seal a turn whose database is locked or unreachable.
SEAL_RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


@dataclass
class TurnRequest:
    message: str
    conversation_id: str
    model: str | None = None
    reasoning_effort: str | None = None
    cwd: str | None = None


async def status_publish(*, conversation_id: str, status: str) -> None:
    """Persist a conversation status and tell everyone watching it."""
    await database_sync_to_async(conversation_set_status)(
        conversation_id=conversation_id, status=status
    )
    await status_notify(conversation_id=conversation_id, status=status)


async def status_notify(*, conversation_id: str, status: str) -> None:
    """Tell everyone watching the conversation about a status already persisted."""
    await notify(
        group_name_for(conversation_id),
        {"type": "chat.status", "conversation": conversation_id, "status": status},
    )


def workspace_root() -> Path:
    """The deployment's workspace root: ``[tools] workspace_root`` or ``var/workspace``."""
    from chat.config import get_config

    config = get_config()
    root = config.tools.workspace_root or Path(settings.DISPATCH_WORKSPACE_ROOT)
    if not root.is_absolute():
        root = (Path(config.source).parent if config.source else Path(settings.BASE_DIR)) / root
    return root.resolve()


def conversation_cwd(cwd: str) -> Path:
    """A conversation's working directory: ``cwd`` resolved inside the workspace root.

    Clients choose a directory below the root, never one outside it: the tools can reach
    everything below a conversation's cwd.
    """
    root = workspace_root()
    path = (root / cwd).resolve() if cwd else root
    if path != root and root not in path.parents:
        raise InvalidInput(f"cwd must be a directory inside the workspace root {root}")
    return path


def _workspace_for(conversation: Conversation) -> str:
    path = conversation_cwd(conversation.cwd)
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


async def turn_start(*, user, request: TurnRequest) -> RunningTurn:
    """Start a turn (SPEC §3) and return it; ``listen()`` on it yields every event from the first.

    Raises InvalidInput (unknown model, bad fields) before anything is persisted, NotFound for
    someone else's conversation, Conflict when a turn already runs in the conversation,
    TurnRateLimited when the user started too many turns lately.
    """
    from chat.providers import UnknownModel, get_catalog

    if not request.message.strip():
        raise InvalidInput("message must be a non-empty string")
    if request.cwd:
        conversation_cwd(request.cwd)
    existing = await _conversation_of(user, request.conversation_id)
    if request.conversation_id in registry.turns:
        raise Conflict("a turn is already running in this conversation")
    catalog = get_catalog()
    model_name = request.model or (existing.model if existing else "") or catalog.default_model
    try:
        resolved = await catalog.resolve(model_name)
    except UnknownModel as exc:
        raise InvalidInput(str(exc)) from exc
    await turn_rate_check(user=user)

    return await _launch(user=user, request=request, resolved=resolved)


async def worker_start() -> str:
    """Start this process's worker services (channel listener, heartbeat, sweep); its name."""
    return await registry.ensure_started(heartbeat_loop)


@transaction.atomic
def _turn_open(*, user, request: TurnRequest, resolved, turn_id: str, worker: str):
    """One transaction: the conversation (created or updated), the running Turn row and the
    ``active`` status; then the history the turn starts from and its working directory."""
    defaults = {"title": default_title(request.message), "model": resolved.name}
    if request.reasoning_effort:
        defaults["reasoning_effort"] = request.reasoning_effort
    if request.cwd:
        defaults["cwd"] = request.cwd
    conversation = conversation_ensure(
        user=user, conversation_id=request.conversation_id, **defaults
    )
    updates = {}
    if request.model and conversation.model != resolved.name:
        updates["model"] = resolved.name
    if request.reasoning_effort and conversation.reasoning_effort != request.reasoning_effort:
        updates["reasoning_effort"] = request.reasoning_effort
    if request.cwd and conversation.cwd != request.cwd:
        updates["cwd"] = request.cwd
    if updates:
        conversation_update(conversation=conversation, **updates)
    turn_begin(conversation_id=conversation.id, turn_id=turn_id, model=resolved.name, worker=worker)
    history = history_messages(conversation_id=conversation.id)
    return conversation, history, _workspace_for(conversation)


async def _launch(*, user, request: TurnRequest, resolved) -> RunningTurn:
    from chat.config import get_config
    from chat.tools import get_tool_registry

    worker = await worker_start()
    turn_id = new_turn_id()
    conversation_id = request.conversation_id
    if conversation_id in registry.turns:
        raise Conflict("a turn is already running in this conversation")
    running = RunningTurn(conversation_id=conversation_id, turn_id=turn_id)
    registry.turns[conversation_id] = running  # claim before awaiting: no double start here
    try:
        conversation, history, cwd = await database_sync_to_async(_turn_open)(
            user=user, request=request, resolved=resolved, turn_id=turn_id, worker=worker
        )
    except BaseException:
        registry.turns.pop(conversation_id, None)
        raise
    tools = get_tool_registry()
    await tools.start()
    runtime = get_config().runtime
    config = TurnConfig(
        conversation_id=conversation_id,
        turn_id=turn_id,
        prompt=request.message,
        history=history,
        model=resolved.name,
        provider_model=resolved.provider_model,
        reasoning_effort=conversation.reasoning_effort or DEFAULT_REASONING_EFFORT,
        cwd=cwd,
        max_steps=runtime.max_steps,
        max_tokens=runtime.max_tokens,
        retry_delays=runtime.retry_delays,
    )
    running.runner = TurnRunner(config, _ports(running, resolved.provider, tools.tools()))
    # A fresh context: the turn outlives the request that starts it, so it must not inherit
    # the request's thread-sensitive executor (asgiref), which dies with the request.
    running.task = asyncio.get_running_loop().create_task(
        _drive(running), context=contextvars.Context()
    )
    await status_notify(conversation_id=conversation_id, status=Conversation.Status.ACTIVE)
    return running


def _ports(running: RunningTurn, provider, tools) -> TurnPorts:
    conversation_id, turn_id = running.conversation_id, running.turn_id

    async def emit(event: dict) -> None:
        await registry.publish(running, event)
        if event["type"] == "status":
            await status_publish(conversation_id=conversation_id, status=event["status"])

    async def persist(messages: list[Message]) -> None:
        await database_sync_to_async(chunks_append)(
            conversation_id=conversation_id, messages=messages, turn_id=turn_id
        )

    async def persist_user(message: Message) -> None:
        await persist([message])

    async def drain() -> list[str]:
        return await database_sync_to_async(queue_drain)(conversation_id=conversation_id)

    async def seal(metrics: TurnMetrics) -> None:
        # A turn must end sealed: outlast a database that stays locked past its busy timeout
        # (the turn already failed on it) rather than leave the turn running until recovery.
        for delay in (*SEAL_RETRY_DELAYS, None):
            try:
                running.closing = await database_sync_to_async(_turn_close)(
                    turn_id=turn_id, metrics=metrics
                )
                return
            except OperationalError as exc:
                if delay is None:
                    raise
                log.warning("sealing turn %s failed (%s); retrying in %ss", turn_id, exc, delay)
                await asyncio.sleep(delay)

    return TurnPorts(
        provider=provider,
        emit=emit,
        persist_user=persist_user,
        persist_step=persist,
        drain_queue=drain,
        seal=seal,
        tools=tools,
    )


@transaction.atomic
def _turn_close(*, turn_id: str, metrics: TurnMetrics) -> tuple[str, list[str]]:
    """Seal the turn; the conversation's status then, and the queue to carry into a new turn
    (taken in the same transaction; nothing is carried into a closed conversation)."""
    turn_seal(turn_id=turn_id, metrics=metrics)
    conversation_id = Turn.objects.values_list("conversation_id", flat=True).get(pk=turn_id)
    status = Conversation.objects.values_list("status", flat=True).get(pk=conversation_id)
    if status == Conversation.Status.CLOSED:
        return status, []
    return status, queue_drain(conversation_id=conversation_id)


async def _drive(running: RunningTurn) -> None:
    """Run the turn, release the conversation, then carry the queue into a new turn."""
    conversation_id = running.conversation_id
    try:
        await running.runner.run()
    except Exception:
        log.exception("turn %s crashed", running.turn_id)
    finally:
        registry.turns.pop(conversation_id, None)
    if running.closing is None:  # never sealed: recovery will seal it
        return
    status, queued = running.closing
    await status_notify(conversation_id=conversation_id, status=status)
    if queued:
        await _carry(conversation_id, "\n\n".join(queued))


async def _carry(conversation_id: str, text: str) -> RunningTurn | None:
    from chat.providers import get_catalog

    conversation = await database_sync_to_async(Conversation.objects.select_related("owner").get)(
        pk=conversation_id
    )
    try:
        resolved = await get_catalog().resolve(conversation.model or get_catalog().default_model)
        request = TurnRequest(message=text, conversation_id=conversation_id)
        return await _launch(user=conversation.owner, request=request, resolved=resolved)
    except Conflict:
        # Another worker or request started a turn first: put the text back for its boundary.
        await database_sync_to_async(queue_add)(conversation_id=conversation_id, text=text)
        return None


async def _conversation_of(user, conversation_id: str) -> Conversation | None:
    """The caller's conversation, None when it does not exist yet; NotFound if not theirs."""
    return await database_sync_to_async(conversation_for_user)(
        user=user, conversation_id=conversation_id
    )


async def _turn_runs(conversation_id: str) -> bool:
    """Whether a turn runs in the conversation, in this process or another."""
    return conversation_id in registry.turns or bool(
        await database_sync_to_async(running_turn_row)(conversation_id=conversation_id)
    )


def running_turn_row(*, conversation_id: str) -> Turn | None:
    return Turn.objects.filter(conversation_id=conversation_id, status=Turn.Status.RUNNING).first()


async def turn_stop(*, user, conversation_id: str) -> bool:
    """Abort the conversation's running turn, wherever it runs. Idempotent."""
    conversation = await _conversation_of(user, conversation_id)
    if conversation is None:
        return False
    if registry.abort(conversation_id):
        return True
    turn = await database_sync_to_async(running_turn_row)(conversation_id=conversation_id)
    if turn is None or not turn.worker:
        return False
    await worker_start()
    await registry.request_stop(owner=turn.worker, conversation_id=conversation_id)
    return True


async def conversation_close(*, user, conversation_id: str) -> bool:
    """Stop the running turn and mark the conversation closed."""
    conversation = await _conversation_of(user, conversation_id)
    if conversation is None:
        return False
    await status_publish(conversation_id=conversation_id, status=Conversation.Status.CLOSED)
    return await turn_stop(user=user, conversation_id=conversation_id)


async def queue_enqueue(*, user, conversation_id: str, text: str) -> tuple[bool, list[dict]]:
    """Queue a message for the running turn, or start a turn with it when none runs.

    Returns (started_turn, queue).
    """
    if not text.strip():
        raise InvalidInput("text must be a non-empty string")
    conversation = await _conversation_of(user, conversation_id)
    started = False
    if conversation is None:
        await turn_start(
            user=user, request=TurnRequest(message=text, conversation_id=conversation_id)
        )
        started = True
    else:
        if not await _turn_runs(conversation_id):
            await turn_rate_check(user=user)  # the text would start a turn: count it first
        await database_sync_to_async(queue_add)(conversation_id=conversation_id, text=text)
        # Order matters: queued first, then look for the turn. If the turn sealed in between,
        # its own final drain may have taken the message; else we take it and start a turn.
        if not await _turn_runs(conversation_id):
            queued = await database_sync_to_async(queue_drain)(conversation_id=conversation_id)
            if queued:
                started = await _carry(conversation_id, "\n\n".join(queued)) is not None
    queue = await database_sync_to_async(queue_list)(conversation_id=conversation_id)
    await _publish_queue(conversation_id, queue)
    return started, queue


async def queue_remove(*, user, conversation_id: str, message_id: str) -> tuple[bool, list[dict]]:
    await _conversation_of(user, conversation_id)  # NotFound when it is not theirs
    cancelled = await database_sync_to_async(queue_cancel)(
        conversation_id=conversation_id, message_id=message_id
    )
    queue = await database_sync_to_async(queue_list)(conversation_id=conversation_id)
    await _publish_queue(conversation_id, queue)
    return cancelled, queue


async def _publish_queue(conversation_id: str, queue: list[dict]) -> None:
    await notify(
        group_name_for(conversation_id),
        {"type": "chat.queue", "conversation": conversation_id, "queue": queue},
    )

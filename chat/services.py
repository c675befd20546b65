"""The one business layer: every write to a conversation goes through here.

Views, the JSON API, WebSocket consumers and the admin call these functions; none of them
writes models directly. Functions are keyword-only and named ``<noun>_<verb>``.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import IntegrityError, OperationalError, transaction
from django.utils import timezone

from chat.models import (
    DEFAULT_REASONING_EFFORT,
    Chunk,
    Conversation,
    QueuedMessage,
    Tab,
    Turn,
    group_name_for,
)
from chat.ratelimit import turn_rate_check
from chat.registry import RunningTurn, notify, registry
from chat.runtime import Message, TurnConfig, TurnPorts, TurnRunner, new_turn_id
from chat.selectors import NotFound, history_messages, queue_list

TITLE_LENGTH = 40
# Seconds between attempts to seal a turn whose database is locked or unreachable.
SEAL_RETRY_DELAYS = (0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)


class Conflict(Exception):
    """The operation clashes with the conversation's state (e.g. a turn is running)."""


def default_title(text: str) -> str:
    """The first message, trimmed, 40 characters + "…" (SPEC §6)."""
    text = " ".join(text.split())
    return text if len(text) <= TITLE_LENGTH else text[:TITLE_LENGTH].rstrip() + "…"


def conversation_ensure(*, user, conversation_id: str, **defaults) -> Conversation:
    """The caller's conversation, created on first use; NotFound when someone else owns it."""
    for _ in range(3):
        conversation = Conversation.objects.filter(pk=conversation_id).first()
        if conversation is not None:
            if conversation.owner_id != user.pk:
                raise NotFound(conversation_id)
            return conversation
        try:
            with transaction.atomic():
                return Conversation.objects.create(id=conversation_id, owner=user, **defaults)
        except IntegrityError:
            continue  # created concurrently: read it again
    raise Conflict(f"could not create conversation {conversation_id}")


@transaction.atomic
def chunks_append(
    *, conversation_id: str, messages: list[Message], turn_id: str = ""
) -> list[dict]:
    """Append messages to the log in one transaction; returns their StoredChunks.

    The conversation row is locked while its counters are bumped, so concurrent writers get
    seqs 1, 2, 3 … with no gap and no duplicate, and every message a fresh ordinal.
    """
    conversation = Conversation.objects.select_for_update().get(pk=conversation_id)
    seq, ordinal = conversation.last_seq, conversation.last_message_ordinal
    rows = []
    for message in messages:
        if not message.chunks:
            continue
        ordinal += 1
        for chunk in message.chunks:
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
    Chunk.objects.bulk_create(rows)
    Conversation.objects.filter(pk=conversation_id).update(
        last_seq=seq, last_message_ordinal=ordinal, last_activity_at=timezone.now()
    )
    return [row.to_wire() for row in rows]


@transaction.atomic
def turn_begin(*, conversation_id: str, turn_id: str, model: str, worker: str) -> Turn:
    """Record a running turn; Conflict when the conversation already has one."""
    conversation = Conversation.objects.select_for_update().get(pk=conversation_id)
    if Turn.objects.filter(conversation=conversation, status=Turn.Status.RUNNING).exists():
        raise Conflict("a turn is already running in this conversation")
    now = timezone.now()
    turn = Turn.objects.create(
        id=turn_id, conversation=conversation, model=model, worker=worker, heartbeat_at=now
    )
    fields = {"status": Conversation.Status.ACTIVE, "last_activity_at": now}
    if not conversation.model:
        fields["model"] = model
    Conversation.objects.filter(pk=conversation_id).update(**fields)
    return turn


@transaction.atomic
def turn_seal(*, turn_id: str, metrics: dict) -> None:
    """Seal a turn: its TurnMetrics and the sealed status commit together."""
    from metrics.services import turn_metrics_record

    turn = Turn.objects.select_for_update().get(pk=turn_id)
    if turn.status == Turn.Status.SEALED:
        return
    now = timezone.now()
    turn.status = Turn.Status.SEALED
    turn.ended_at = now
    turn.finish_reason = metrics["finishReason"]
    turn.save(update_fields=["status", "ended_at", "finish_reason"])
    turn_metrics_record(turn=turn, metrics=metrics)
    Conversation.objects.filter(pk=turn.conversation_id).exclude(
        status=Conversation.Status.CLOSED
    ).update(status=Conversation.Status.IDLE, last_activity_at=now)


def conversation_set_status(*, conversation_id: str, status: str) -> None:
    Conversation.objects.filter(pk=conversation_id).update(status=status)


def conversation_update(*, conversation: Conversation, **fields) -> Conversation:
    """Set title / model / reasoning_effort / cwd."""
    for name, value in fields.items():
        setattr(conversation, name, value)
    conversation.save(update_fields=list(fields))
    return conversation


def queue_add(*, conversation_id: str, text: str) -> QueuedMessage:
    return QueuedMessage.objects.create(conversation_id=conversation_id, text=text)


@transaction.atomic
def queue_drain(*, conversation_id: str) -> list[str]:
    """Take every queued message of the conversation, oldest first."""
    rows = list(QueuedMessage.objects.select_for_update().filter(conversation_id=conversation_id))
    QueuedMessage.objects.filter(pk__in=[r.pk for r in rows]).delete()
    return [r.text for r in rows]


def queue_cancel(*, conversation_id: str, message_id: str) -> bool:
    if not message_id.isdigit():
        return False
    deleted, _ = QueuedMessage.objects.filter(
        conversation_id=conversation_id, pk=int(message_id)
    ).delete()
    return deleted > 0


# ====================================================================== turns (async)
#
# A turn runs as its own asyncio task in this process's registry, detached from the request or
# socket that started it. The database is the source of truth; events are a notification path.

log = logging.getLogger(__name__)


class InvalidInput(ValueError):
    """Bad input from a client (HTTP 400 / ``chat.error``)."""


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
    existing = await database_sync_to_async(
        Conversation.objects.filter(pk=request.conversation_id).first
    )()
    if existing is not None and existing.owner_id != user.pk:
        raise NotFound(request.conversation_id)
    if request.conversation_id in registry.turns:
        raise Conflict("a turn is already running in this conversation")
    catalog = get_catalog()
    model_name = request.model or (existing.model if existing else "") or catalog.default_model
    try:
        resolved = await catalog.resolve(model_name)
    except UnknownModel as exc:
        raise InvalidInput(str(exc)) from exc
    await turn_rate_check(user=user)

    defaults = {"title": default_title(request.message), "model": resolved.name}
    if request.reasoning_effort:
        defaults["reasoning_effort"] = request.reasoning_effort
    if request.cwd:
        defaults["cwd"] = request.cwd
    conversation = await database_sync_to_async(conversation_ensure)(
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
        await database_sync_to_async(conversation_update)(conversation=conversation, **updates)
    return await _launch(conversation=conversation, prompt=request.message, resolved=resolved)


async def worker_start() -> str:
    """Start this process's worker services (channel listener, heartbeat, sweep); its name."""
    return await registry.ensure_started(_heartbeat_loop)


async def _launch(*, conversation: Conversation, prompt: str, resolved) -> RunningTurn:
    from chat.config import get_config
    from chat.tools import get_tool_registry

    worker = await worker_start()
    turn_id = new_turn_id()
    conversation_id = conversation.id
    if conversation_id in registry.turns:
        raise Conflict("a turn is already running in this conversation")
    running = RunningTurn(conversation_id=conversation_id, turn_id=turn_id)
    registry.turns[conversation_id] = running  # claim before awaiting: no double start here
    try:
        await database_sync_to_async(turn_begin)(
            conversation_id=conversation_id, turn_id=turn_id, model=resolved.name, worker=worker
        )
        history = await database_sync_to_async(history_messages)(conversation_id=conversation_id)
        cwd = await database_sync_to_async(_workspace_for)(conversation)
    except BaseException:
        registry.turns.pop(conversation_id, None)
        raise
    tools = get_tool_registry()
    await tools.start()
    runtime = get_config().runtime
    config = TurnConfig(
        conversation_id=conversation_id,
        turn_id=turn_id,
        prompt=prompt,
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
        _drive(running, conversation), context=contextvars.Context()
    )
    await status_publish(conversation_id=conversation_id, status=Conversation.Status.ACTIVE)
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

    async def seal(metrics: dict) -> None:
        # A turn must end sealed: outlast a database that stays locked past its busy timeout
        # (the turn already failed on it) rather than leave the turn running until recovery.
        for delay in (*SEAL_RETRY_DELAYS, None):
            try:
                await database_sync_to_async(turn_seal)(turn_id=turn_id, metrics=metrics)
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


async def _drive(running: RunningTurn, conversation: Conversation) -> None:
    """Run the turn, release the conversation, then carry the queue into a new turn."""
    conversation_id = running.conversation_id
    try:
        await running.runner.run()
    except Exception:
        log.exception("turn %s crashed", running.turn_id)
    finally:
        registry.turns.pop(conversation_id, None)
    status = await database_sync_to_async(
        Conversation.objects.filter(pk=conversation_id).values_list("status", flat=True).first
    )()
    await status_publish(conversation_id=conversation_id, status=status or "idle")
    if status == Conversation.Status.CLOSED:
        return
    queued = await database_sync_to_async(queue_drain)(conversation_id=conversation_id)
    if queued:
        await _carry(conversation_id, "\n\n".join(queued))


async def _carry(conversation_id: str, text: str) -> RunningTurn | None:
    from chat.providers import get_catalog

    conversation = await database_sync_to_async(Conversation.objects.get)(pk=conversation_id)
    try:
        resolved = await get_catalog().resolve(conversation.model or get_catalog().default_model)
        return await _launch(conversation=conversation, prompt=text, resolved=resolved)
    except Conflict:
        # Another worker or request started a turn first: put the text back for its boundary.
        await database_sync_to_async(queue_add)(conversation_id=conversation_id, text=text)
        return None


def running_turn_row(*, conversation_id: str) -> Turn | None:
    return Turn.objects.filter(conversation_id=conversation_id, status=Turn.Status.RUNNING).first()


async def turn_stop(*, user, conversation_id: str) -> bool:
    """Abort the conversation's running turn, wherever it runs. Idempotent."""
    conversation = await database_sync_to_async(
        Conversation.objects.filter(pk=conversation_id).first
    )()
    if conversation is None:
        return False
    if conversation.owner_id != user.pk:
        raise NotFound(conversation_id)
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
    conversation = await database_sync_to_async(
        Conversation.objects.filter(pk=conversation_id).first
    )()
    if conversation is None:
        return False
    if conversation.owner_id != user.pk:
        raise NotFound(conversation_id)
    await status_publish(conversation_id=conversation_id, status=Conversation.Status.CLOSED)
    return await turn_stop(user=user, conversation_id=conversation_id)


async def queue_enqueue(*, user, conversation_id: str, text: str) -> tuple[bool, list[dict]]:
    """Queue a message for the running turn, or start a turn with it when none runs.

    Returns (started_turn, queue).
    """
    if not text.strip():
        raise InvalidInput("text must be a non-empty string")
    conversation = await database_sync_to_async(
        Conversation.objects.filter(pk=conversation_id).first
    )()
    if conversation is not None and conversation.owner_id != user.pk:
        raise NotFound(conversation_id)
    started = False
    if conversation is None:
        await turn_start(
            user=user, request=TurnRequest(message=text, conversation_id=conversation_id)
        )
        started = True
    else:
        if conversation_id not in registry.turns and not await database_sync_to_async(
            running_turn_row
        )(conversation_id=conversation_id):
            await turn_rate_check(user=user)  # the text would start a turn: count it first
        await database_sync_to_async(queue_add)(conversation_id=conversation_id, text=text)
        # Order matters: queued first, then look for the turn. If the turn sealed in between,
        # its own final drain may have taken the message; else we take it and start a turn.
        running = await database_sync_to_async(running_turn_row)(conversation_id=conversation_id)
        if running is None and conversation_id not in registry.turns:
            queued = await database_sync_to_async(queue_drain)(conversation_id=conversation_id)
            if queued:
                started = await _carry(conversation_id, "\n\n".join(queued)) is not None
    queue = await database_sync_to_async(queue_list)(conversation_id=conversation_id)
    await _publish_queue(conversation_id, queue)
    return started, queue


async def queue_remove(*, user, conversation_id: str, message_id: str) -> tuple[bool, list[dict]]:
    conversation = await database_sync_to_async(
        Conversation.objects.filter(pk=conversation_id).first
    )()
    if conversation is not None and conversation.owner_id != user.pk:
        raise NotFound(conversation_id)
    cancelled = await database_sync_to_async(queue_cancel)(
        conversation_id=conversation_id, message_id=message_id
    )
    queue = await database_sync_to_async(queue_list)(conversation_id=conversation_id)
    await _publish_queue(conversation_id, queue)
    return cancelled, queue


async def _publish_queue(conversation_id: str, queue: list[dict]) -> None:
    await get_channel_layer().group_send(
        group_name_for(conversation_id),
        {"type": "chat.queue", "conversation": conversation_id, "queue": queue},
    )


# ====================================================================== recovery


def turns_recover(*, stale_before=None) -> list[str]:
    """Seal running turns whose worker is gone as ``interrupted``; their committed steps stay.

    ``stale_before=None`` seals every running turn (start-up of the only process);
    otherwise only turns whose heartbeat is older than that moment.
    """
    rows = Turn.objects.filter(status=Turn.Status.RUNNING)
    if stale_before is not None:
        rows = rows.filter(heartbeat_at__lt=stale_before)
    sealed = []
    for turn in rows:
        turn_seal(
            turn_id=turn.id,
            metrics={
                "turnId": turn.id,
                "model": turn.model,
                "usage": {"inputTokens": 0, "outputTokens": 0},
                "finishReason": "interrupted",
                "steps": [],
            },
        )
        sealed.append(turn.id)
    if sealed:
        log.warning("recovered %d interrupted turn(s): %s", len(sealed), ", ".join(sealed))
    return sealed


def stale_before():
    """Turns whose heartbeat is older than this moment have lost their worker."""
    return timezone.now() - timedelta(seconds=settings.DISPATCH_STALE_SECONDS)


def turns_heartbeat(*, worker: str, turn_ids: list[str]) -> None:
    Turn.objects.filter(pk__in=turn_ids, worker=worker, status=Turn.Status.RUNNING).update(
        heartbeat_at=timezone.now()
    )


async def _heartbeat_loop() -> None:
    while True:
        await asyncio.sleep(settings.DISPATCH_HEARTBEAT_SECONDS)
        try:
            turn_ids = [t.turn_id for t in registry.turns.values()]
            if turn_ids:
                await database_sync_to_async(turns_heartbeat)(
                    worker=registry.worker, turn_ids=turn_ids
                )
        except Exception:
            log.exception("heartbeat")


# ====================================================================== tabs
#
# A user's open conversations, persisted server-side so every device shows the same tabs.
# Each change is announced on the user's tabs group after commit; the web app's sockets
# re-render their tab bar from the database when they hear it.


def tabs_group_for(user_id: int) -> str:
    """The channel-layer group of a user's web app sockets (tab bar updates)."""
    return f"tabs.{user_id}"


def _tabs_changed(user) -> None:
    group = tabs_group_for(user.pk)
    transaction.on_commit(
        lambda: async_to_sync(get_channel_layer().group_send)(group, {"type": "ui.tabs"})
    )


@transaction.atomic
def tab_open(*, user, conversation_id: str) -> Tab:
    """Open the caller's conversation as a tab (last position) and make it the active one.

    Opening a tab that is already open only activates it. NotFound for someone else's.
    """
    conversation = Conversation.objects.filter(pk=conversation_id).first()
    if conversation is None or conversation.owner_id != user.pk:
        raise NotFound(conversation_id)
    tab = Tab.objects.select_for_update().filter(user=user, conversation=conversation).first()
    if tab is None:
        last = Tab.objects.filter(user=user).order_by("-position").first()
        tab = Tab.objects.create(
            user=user, conversation=conversation, position=last.position + 1 if last else 0
        )
        _tabs_changed(user)
    tab_activate(user=user, conversation_id=conversation_id)
    tab.active = True
    return tab


@transaction.atomic
def tab_close(*, user, conversation_id: str) -> bool:
    """Remove the tab (the conversation stays in history); whether there was one."""
    deleted, _ = Tab.objects.filter(user=user, conversation_id=conversation_id).delete()
    if deleted:
        _tabs_changed(user)
    return deleted > 0


@transaction.atomic
def tab_rename(*, user, conversation_id: str, title: str) -> Conversation:
    """Set the conversation's title (PUT title semantics) and update the user's tab bars."""
    conversation = Conversation.objects.filter(pk=conversation_id).first()
    if conversation is None or conversation.owner_id != user.pk:
        raise NotFound(conversation_id)
    conversation_update(conversation=conversation, title=title)
    _tabs_changed(user)
    return conversation


@transaction.atomic
def tab_activate(*, user, conversation_id: str) -> None:
    """Mark the tab the user looks at; ``/`` reopens it. Other devices keep their own view,
    so nothing is announced."""
    Tab.objects.filter(user=user).exclude(conversation_id=conversation_id).update(active=False)
    Tab.objects.filter(user=user, conversation_id=conversation_id).update(active=True)


def tab_list(*, user) -> list[Tab]:
    """The user's tabs in order, with their conversations."""
    return list(Tab.objects.filter(user=user).select_related("conversation").order_by("position"))

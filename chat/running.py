"""The turns running in this process: their event buffers, fan-out and replay.

Each process (worker) owns the turns it started. A turn's events go to local listeners (the
NDJSON response of ``POST /chat``) and to the conversation's channel-layer group, tagged with
their index in the turn so a subscriber can join a replay and the live stream with no gap and
no duplicate. Another worker asks the owning worker for a replay, or to stop a turn, through
the owner's worker channel (its name is stored on the Turn row).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from channels.layers import get_channel_layer

from chat import observe
from chat.models import group_name_for
from chat.runtime import TurnRunner

log = logging.getLogger(__name__)


@dataclass
class RunningTurn:
    conversation_id: str
    turn_id: str
    runner: TurnRunner | None = None
    task: asyncio.Task | None = None
    events: list[dict] = field(default_factory=list)
    listeners: set[asyncio.Queue] = field(default_factory=set)
    # Set when sealed: the conversation's status then and the queued texts to carry on with.
    closing: tuple[str, list[str]] | None = None
    # A stop or close asked for this turn (sticky), and the wake-up of a seal that waits to
    # retry (cleared by each wait).
    stop_requested: bool = False
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    def listen(self) -> asyncio.Queue:
        """A queue of this turn's events: every event so far, then the live ones (never drops).

        A None after them means the stream ends without ``turn-sealed`` (``end_streams``).
        """
        queue: asyncio.Queue = asyncio.Queue()
        for event in self.events:
            queue.put_nowait(event)
        self.listeners.add(queue)
        return queue

    def end_streams(self) -> None:
        """End every local listener's stream now (a None), e.g. a stopped turn whose seal waits
        for the database; events after this go to the channel layer only."""
        for queue in self.listeners:
            queue.put_nowait(None)
        self.listeners.clear()

    def request_stop(self) -> None:
        """Abort the turn (``TurnRunner.abort``) and wake a seal that waits to retry."""
        self.stop_requested = True
        if self.runner is not None:
            self.runner.abort()
        self._wake.set()

    def interrupt(self) -> None:
        """End the turn as ``interrupted`` after its last committed step
        (``TurnRunner.interrupt``), and wake a seal that waits to retry."""
        if self.runner is not None:
            self.runner.interrupt()
        self._wake.set()

    async def pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or less if a stop is requested meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()


class RunningTurns:
    def __init__(self) -> None:
        self.turns: dict[str, RunningTurn] = {}
        self.worker: str = ""
        # Shutting down: no new turns or sockets here; running turns finish (chat.startup).
        self.draining = False
        self._background: list[asyncio.Task] = []
        self._starting: asyncio.Task[str] | None = None

    async def ensure_started(self, *background: Callable[[], Coroutine[Any, Any, None]]) -> str:
        """Start this worker's channel listener and ``background`` loops (once per event loop);
        its channel name. Calls made while the start awaits the channel layer wait for the
        same start: a turn opened then must not be stored without its worker (no heartbeat,
        no replay from another worker)."""
        loop = asyncio.get_running_loop()
        starting = self._starting
        if starting is None or starting.get_loop() is not loop:
            # A fresh context: the loops outlive the request that starts them (see _launch).
            starting = self._starting = loop.create_task(
                self._start(background), context=contextvars.Context()
            )
        try:
            return await asyncio.shield(starting)  # a caller's cancellation leaves it going
        except Exception:
            if self._starting is starting:  # the layer failed: the next call starts again
                self._starting = None
            raise

    async def _start(self, background: tuple[Callable[[], Coroutine[Any, Any, None]], ...]) -> str:
        layer = get_channel_layer()
        self.worker = await layer.new_channel("dispatch.worker.")
        loop = asyncio.get_running_loop()
        self._background = [  # each in a fresh context of its own
            loop.create_task(job, context=contextvars.Context())
            for job in (self._listen(layer), *(job() for job in background))
        ]
        return self.worker

    async def until_idle(self) -> None:
        """Return once no turn runs here (turns carried into new ones included)."""
        while self.turns:
            tasks = [turn.task for turn in self.turns.values() if turn.task is not None]
            if tasks:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            else:  # a turn being started has no task yet
                await asyncio.sleep(0.05)

    def interrupt_all(self) -> int:
        """Interrupt every turn running here; how many."""
        for turn in list(self.turns.values()):
            turn.interrupt()
        return len(self.turns)

    # ------------------------------------------------------------------ fan-out

    async def publish(self, turn: RunningTurn, event: dict) -> None:
        """Buffer the event for replay, hand it to local listeners, send it to the group."""
        index = len(turn.events)
        turn.events.append(event)
        for queue in turn.listeners:
            queue.put_nowait(event)
        await notify(
            group_name_for(turn.conversation_id),
            {"type": "chat.event", "event": event, "turn": turn.turn_id, "index": index},
        )

    def replay_of(self, conversation_id: str) -> dict | None:
        turn = self.turns.get(conversation_id)
        if turn is None:
            return None
        return {"turn": turn.turn_id, "events": list(turn.events)}

    async def request_replay(self, *, owner: str, conversation_id: str, reply_to: str) -> None:
        """Ask ``owner`` (a worker channel) to send the running turn's events to ``reply_to``."""
        await get_channel_layer().send(
            owner,
            {"type": "turn.replay", "conversation": conversation_id, "reply_to": reply_to},
        )

    async def request_stop(self, *, owner: str, conversation_id: str) -> None:
        """Ask ``owner`` (a worker channel) to abort the conversation's running turn."""
        await get_channel_layer().send(
            owner, {"type": "turn.stop", "conversation": conversation_id}
        )

    def abort(self, conversation_id: str) -> bool:
        turn = self.turns.get(conversation_id)
        if turn is None or turn.runner is None:
            return False
        turn.request_stop()
        return True

    async def _send_replay(self, conversation_id: str, reply_to: str) -> None:
        replay = self.replay_of(conversation_id) or {"turn": None, "events": []}
        await get_channel_layer().send(
            reply_to, {"type": "chat.replay", "conversation": conversation_id, **replay}
        )

    async def _listen(self, layer) -> None:
        while True:
            try:
                message = await layer.receive(self.worker)
                if message["type"] == "turn.replay":
                    await self._send_replay(message["conversation"], message["reply_to"])
                elif message["type"] == "turn.stop":
                    self.abort(message["conversation"])
            except asyncio.CancelledError:
                raise
            except Exception:  # the listener must outlive a bad message or a layer hiccup
                log.exception("worker channel listener")
                await asyncio.sleep(1)


async def notify(group: str, message: dict) -> None:
    """Send ``message`` to a channel-layer group; a layer failure only drops it.

    Fan-out is a notification path (clients resync from the log), so a layer that is down
    (Redis restarting) must never fail the turn or request that publishes.
    """
    try:
        await get_channel_layer().group_send(group, message)
    except Exception as exc:
        observe.channel_send_failed(message["type"])
        log.warning("channel layer: dropped a %s message to %s: %r", message["type"], group, exc)


running_turns = RunningTurns()

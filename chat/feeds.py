"""A socket's feed of one conversation's turn events: replay, then live, no gap, no duplicate.

Both sockets (the JSON protocol and the web app) watch conversations the same way:
join the conversation's channel-layer group first, then ask the worker that owns the running
turn for the events so far. Live events that arrive while the replay is on its way are
buffered; every event travels with its index in its turn, so an event already delivered is
dropped whichever path brought it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from channels.db import database_sync_to_async

from chat import selectors, services
from chat.running import running_turns

log = logging.getLogger(__name__)

REPLAY_TIMEOUT = 5.0  # seconds the owner of a running turn has to answer a replay request
REPLAY_ASKS = 3  # requests before live events go on without the replay

Deliver = Callable[[dict], Awaitable[None]]


class TurnFeed:
    """Feeds ``{"turn", "index", "event"}`` messages of one conversation to ``deliver``."""

    def __init__(self, conversation_id: str, deliver: Deliver, *, held: bool = False):
        """``held``: live events wait in the buffer until the first ``replay`` is done (for a
        socket whose events may arrive while the subscribing frame is still handled)."""
        self.conversation_id = conversation_id
        self._deliver = deliver
        self.pending = held  # a replay is on its way: live events wait in the buffer
        self._buffer: list[dict] = []
        self._asking: object = None  # the replay whose answer is awaited
        self.turn: str | None = None  # the turn whose events were delivered last
        self.last_index = -1

    async def replay(self, *, reply_to: str) -> None:
        """Ask the running turn's owner, if any, to send its events so far to ``reply_to``."""
        self.pending = True
        local = running_turns.replay_of(self.conversation_id)
        if local is not None:  # the turn runs in this process: no round trip
            await self.on_replay(local)
            return
        self._asking = asking = object()  # a later replay's asks supersede these
        await self._ask(reply_to, asking, REPLAY_ASKS)

    async def _ask(self, reply_to: str, asking: object, asks: int) -> None:
        """Ask the owner (``asks`` times at most, REPLAY_TIMEOUT apart, while it is silent:
        the channel layer may have dropped the request, or the owner be slow)."""
        owner = await turn_owner(self.conversation_id)
        if owner is None:  # no turn runs (any more): nothing to replay
            await self._release()
            return
        await services.worker_start()
        await running_turns.request_replay(
            owner=owner, conversation_id=self.conversation_id, reply_to=reply_to
        )
        asyncio.get_running_loop().call_later(
            REPLAY_TIMEOUT,
            lambda: asyncio.ensure_future(self._unanswered(reply_to, asking, asks - 1)),
        )

    async def _unanswered(self, reply_to: str, asking: object, asks: int) -> None:
        if not self.pending or asking is not self._asking:
            return  # answered, or asked again since
        if asks == 0:  # the owner never answered (it died): go on with what came live
            await self._release()
            return
        try:
            await self._ask(reply_to, asking, asks)
        except Exception:  # the database or the layer is out: go on with what came live
            log.warning("conversation %s: replay not asked again", self.conversation_id)
            await self._release()

    def forget(self) -> None:
        """Start over (a resync): the next turn events are delivered from scratch."""
        self.turn, self.last_index = None, -1

    async def on_event(self, message: dict) -> None:
        """A live ``chat.event`` group message."""
        if self.pending:
            self._buffer.append(message)
        else:
            await self._pass(message)

    async def on_replay(self, message: dict) -> None:
        """The owner's ``chat.replay`` answer: the running turn's events so far."""
        if not self.pending:
            return
        if message["turn"] is not None:
            for index, event in enumerate(message["events"]):
                await self._pass({"turn": message["turn"], "index": index, "event": event})
        await self._release()

    async def _release(self) -> None:
        self.pending = False
        buffered, self._buffer = self._buffer, []
        for message in buffered:
            await self._pass(message)

    async def _pass(self, message: dict) -> None:
        if message["turn"] == self.turn and message["index"] <= self.last_index:
            return  # already delivered
        self.turn, self.last_index = message["turn"], message["index"]
        await self._deliver(message)


async def turn_owner(conversation_id: str) -> str | None:
    """The worker channel of the process running the conversation's turn, if one runs."""
    turn = await database_sync_to_async(selectors.running_turn)(conversation_id=conversation_id)
    return turn.worker if turn is not None and turn.worker else None

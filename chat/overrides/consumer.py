"""The message loop of Dispatch's WebSocket consumers: Channels' consumer loop, made cheap.

Replaces ``channels.consumer.AsyncConsumer.__call__`` and ``dispatch`` as of channels 4.3
(pinned by tests/test_overrides.py):

- Channels runs ``close_old_connections()`` in the process's one sync thread before every
  message, so each message (a live event, a ``conversation.open`` to all of a user's sockets)
  would wait behind all the database work of the process: turn starts and seals under load.
  These consumers reach the database only through ``database_sync_to_async``, which closes
  old connections itself.
- Channels' ``await_many_dispatch`` makes a task and an ``asyncio.wait`` per message; here one
  reader per source feeds a bounded inbox, and messages are dispatched in arrival order, one
  at a time, as before (docs/benchmarks.md).
- A consumer with ``SEPARATE_LANES`` has two lanes, each dispatched in its own order: the
  client's frames (one at a time, in arrival order, through the inbox) and the channel
  layer's messages (one at a time, in arrival order, each dispatched as it is received). A frame whose handler waits (a turn start waits for the
  database) then no longer holds up the live events of the socket's other conversations.
  The layer's lane starts once ``websocket.connect`` is handled and stops before
  ``websocket.disconnect`` is.
- Frames skip Channels' session middleware on their way out: its ``send`` saves a modified
  session on ``http.response.start`` only, so for a socket it is a few attribute reads through
  the lazy session per frame for nothing (``InstanceSessionWrapper.send``, channels 4.3).
- ``_write_text`` is ``chat.overrides.ws_send``'s writer of text frames for the connection
  (None off Daphne): a WebSocket consumer's ``send`` uses it before Channels' and Daphne's
  reply path (chat/sockets/base.py).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.layers import get_channel_layer
from channels.sessions import InstanceSessionWrapper

from chat.overrides.ws_send import text_writer

INBOX_SIZE = 64  # messages read ahead of dispatch, from the socket and the channel layer


Inbox = asyncio.Queue  # of (message, None) or (None, the error that ended its source)


async def _read(source, inbox: Inbox) -> None:
    """Feed ``source``'s messages into ``inbox``; its failure too, last."""
    try:
        while True:
            await inbox.put((await source(), None))
    except asyncio.CancelledError:
        raise
    except BaseException as exc:  # the consumer raises it, as Channels would
        await inbox.put((None, exc))


def _unwrapped(send):
    """The send under Channels' session middleware, which never saves for a socket."""
    wrapper = getattr(send, "__self__", None)
    if isinstance(wrapper, InstanceSessionWrapper) and wrapper.scope.get("type") == "websocket":
        return _unwrapped(wrapper.real_send)
    return send


class DirectDispatch:
    """Mixin for an async Channels consumer: ``__call__`` and ``dispatch`` replaced."""

    channel_layer_alias: str  # the consumer's (Channels' AsyncConsumer sets the default)
    # The client's frames and the channel layer's messages in two lanes (see the module).
    SEPARATE_LANES = False
    _write_text: Callable[[str], bool] | None = None  # set by __call__ (see the module)

    async def __call__(self, scope, receive, send) -> None:
        """``AsyncConsumer.__call__`` with the inbox in place of ``await_many_dispatch``."""
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = await self.channel_layer.new_channel()
        self.channel_receive = functools.partial(self.channel_layer.receive, self.channel_name)
        self.base_send = _unwrapped(send)
        self._write_text = text_writer(self.base_send)
        frames: Inbox = asyncio.Queue(INBOX_SIZE)
        readers = [asyncio.create_task(_read(receive, frames))]
        if not self.SEPARATE_LANES:
            readers.append(asyncio.create_task(_read(self.channel_receive, frames)))
        connected = asyncio.Event()
        second = asyncio.create_task(self._layer_lane(connected)) if self.SEPARATE_LANES else None
        first = asyncio.create_task(self._frame_lane(frames, connected, second))
        lanes = [first, *([second] if second else [])]
        try:
            # A failure in either lane ends the consumer, as one in a handler did before.
            await asyncio.wait(lanes, return_when=asyncio.FIRST_COMPLETED)
            if second is not None and second.done() and not second.cancelled():
                second.result()
            await first
        except StopConsumer:
            pass
        finally:
            for task in (*readers, *lanes):
                task.cancel()
            await asyncio.gather(*readers, *lanes, return_exceptions=True)

    async def _frame_lane(
        self, inbox: Inbox, connected: asyncio.Event, layer_lane: asyncio.Task | None
    ) -> None:
        """The client's frames (and, in one lane, the layer's messages), one at a time."""
        while True:
            message, error = await inbox.get()
            if error is not None:
                raise error
            if message["type"] == "websocket.disconnect" and layer_lane is not None:
                layer_lane.cancel()  # nothing more goes out on a closed socket
                await asyncio.gather(layer_lane, return_exceptions=True)
            await self.dispatch(message)
            if message["type"] == "websocket.connect":
                connected.set()

    async def _layer_lane(self, connected: asyncio.Event) -> None:
        """The channel layer's messages, one at a time, once the socket is connected: each is
        dispatched as it is received (no inbox: the layer buffers them meanwhile)."""
        await connected.wait()
        receive, dispatch = self.channel_receive, self.dispatch
        while True:
            await dispatch(await receive())

    async def dispatch(self, message: dict) -> None:
        """``AsyncConsumer.dispatch`` without its per-message ``aclose_old_connections()``."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"no handler for message type {message['type']}")
        await handler(message)

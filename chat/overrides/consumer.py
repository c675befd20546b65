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
"""

from __future__ import annotations

import asyncio
import functools

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.layers import get_channel_layer

INBOX_SIZE = 64  # messages read ahead of dispatch, from the socket and the channel layer


class DirectDispatch:
    """Mixin for an async Channels consumer: ``__call__`` and ``dispatch`` replaced."""

    channel_layer_alias: str  # the consumer's (Channels' AsyncConsumer sets the default)

    async def __call__(self, scope, receive, send) -> None:
        """``AsyncConsumer.__call__`` with the inbox in place of ``await_many_dispatch``."""
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = await self.channel_layer.new_channel()
        self.channel_receive = functools.partial(self.channel_layer.receive, self.channel_name)
        self.base_send = send
        inbox: asyncio.Queue[tuple[dict | None, BaseException | None]] = asyncio.Queue(INBOX_SIZE)

        async def read(source) -> None:
            try:
                while True:
                    await inbox.put((await source(), None))
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # the consumer raises it, as Channels would
                await inbox.put((None, exc))

        readers = [asyncio.create_task(read(source)) for source in (receive, self.channel_receive)]
        try:
            while True:
                message, error = await inbox.get()
                if error is not None:
                    raise error
                assert message is not None  # a reader puts a message or an error
                await self.dispatch(message)
        except StopConsumer:
            pass
        finally:
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)

    async def dispatch(self, message: dict) -> None:
        """``AsyncConsumer.dispatch`` without its per-message ``aclose_old_connections()``."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"no handler for message type {message['type']}")
        await handler(message)

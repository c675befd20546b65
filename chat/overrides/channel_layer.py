"""The embedded (single-process) channel layer: Channels' InMemoryChannelLayer, made cheap.

Replaces ``channels.layers.InMemoryChannelLayer.send``, ``receive``, ``group_send`` and
``_clean_expired`` as of channels 4.3 (pinned by tests/overrides/test_upstream.py);
settings.CHANNEL_LAYERS names this class when no REDIS_URL is set.
"""

import asyncio
import contextlib
import functools
import time

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer as _ChannelsInMemoryLayer

CLEAN_EVERY = 1.0  # seconds


class InMemoryChannelLayer(_ChannelsInMemoryLayer):
    """Channels' in-memory layer, made cheap on the per-delta path.

    - Channels' own layer walks every channel and every group member on each send and receive
      to drop expired messages, so the cost of one delta grew with the number of open sockets
      and conversations. Expiry is a safety net (seconds to minutes): sweeping at most once a
      second keeps its meaning and makes the per-delta cost constant.
    - Its ``group_send`` starts one task per member and gathers them; putting a message on an
      in-memory queue never waits, so a plain loop does the same without the tasks.
    - Its ``send`` deep-copies every message for every receiver. Dispatch never changes a
      message after sending it or on receiving it (events are built fresh for each send), so
      each receiver gets its own copy of the outer dict only.
    - Its ``send`` and ``receive`` build a new ``asyncio.Queue`` on every call (the default of
      a ``setdefault``) and match every name against the layer's regular expression; here a
      queue is made only for a channel that has none, and a name is checked once.
    """

    _cleaned_at = 0.0

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now - self._cleaned_at >= CLEAN_EVERY:
            self._cleaned_at = now
            super()._clean_expired()

    def _queue(self, channel: str) -> asyncio.Queue:
        queue = self.channels.get(channel)
        if queue is None:
            queue = self.channels[channel] = asyncio.Queue(self.get_capacity(channel))
        return queue

    async def send(self, channel: str, message: dict) -> None:
        assert isinstance(message, dict), "message is not a dict"
        _valid_name(self, "channel", channel)
        try:
            self._queue(channel).put_nowait((time.time() + self.expiry, dict(message)))
        except asyncio.QueueFull:
            raise ChannelFull(channel) from None

    async def receive(self, channel: str) -> dict:
        _valid_name(self, "channel", channel)
        self._clean_expired()
        queue = self._queue(channel)
        try:
            _, message = await queue.get()
        finally:
            if queue.empty():
                self.channels.pop(channel, None)
        return message

    async def group_send(self, group: str, message: dict) -> None:
        assert isinstance(message, dict), "message is not a dict"
        _valid_name(self, "group", group)
        self._clean_expired()
        for channel in list(self.groups.get(group, ())):
            with contextlib.suppress(ChannelFull):  # a full channel drops, as in Channels
                await self.send(channel, message)


@functools.lru_cache(maxsize=4096)
def _valid_name(layer: InMemoryChannelLayer, kind: str, name: str) -> None:
    """Channels' check of a channel or group name (TypeError), remembered for names it passed."""
    if kind == "group":
        layer.require_valid_group_name(name)
    else:
        layer.require_valid_channel_name(name)

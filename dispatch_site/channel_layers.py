"""The embedded (single-process) channel layer."""

import time

from channels.layers import InMemoryChannelLayer as _ChannelsInMemoryLayer

CLEAN_EVERY = 1.0  # seconds


class InMemoryChannelLayer(_ChannelsInMemoryLayer):
    """Channels' in-memory layer, dropping expired messages at most once a second.

    Channels' own layer walks every channel and every group member on each send and receive
    to drop expired messages, so the cost of delivering one delta grew with the number of
    open sockets and conversations. Expiry is a safety net (seconds to minutes), so sweeping
    on a timer keeps its meaning and makes the per-delta cost constant.
    """

    _cleaned_at = 0.0

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now - self._cleaned_at >= CLEAN_EVERY:
            self._cleaned_at = now
            super()._clean_expired()

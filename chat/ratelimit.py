"""Per-user limit on starting turns: DISPATCH_TURN_RATE_LIMIT turns per DISPATCH_TURN_RATE_WINDOW.

A fixed-window counter in the cache framework: per process with the default local-memory
cache, shared by every worker when the cache is Redis (REDIS_URL). Carrying queued messages
into a new turn is not counted: only a client's request to start a turn is.
"""

from __future__ import annotations

import logging
import time

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.locmem import LocMemCache
from redis.exceptions import RedisError

from chat.errors import RateLimited

log = logging.getLogger(__name__)


async def turn_rate_check(*, user) -> None:
    """Count one turn start for ``user``; raise RateLimited when over the limit."""
    limit = settings.DISPATCH_TURN_RATE_LIMIT
    if limit <= 0:
        return
    window = settings.DISPATCH_TURN_RATE_WINDOW
    key = f"turn-rate:{user.pk}:{int(time.time() // window)}"
    cache = caches["default"]
    try:
        if isinstance(cache, LocMemCache):
            # This process's memory under a lock: counted here, without a thread.
            count = _count(cache, key, window)
        else:
            # Redis: one round trip on a thread of its own. The cache's asynchronous methods
            # would make two, on the database's thread, behind every start of a burst.
            count = await sync_to_async(_count, thread_sensitive=False)(cache, key, window)
    except (RedisError, OSError) as exc:  # the cache is down (Redis restarting): not counted
        log.warning("turn rate limit: cache unavailable (%s); not counted", exc)
        return
    if count > limit:
        raise RateLimited(f"too many turns: at most {limit} per {window}s, try again in a moment")


def _count(cache, key: str, window: int) -> int:
    # add() is a no-op when the key exists: concurrent first turns cannot reset the count.
    cache.add(key, 0, timeout=window + 1)
    return cache.incr(key)

"""Per-user limit on starting turns: DISPATCH_TURN_RATE_LIMIT turns per DISPATCH_TURN_RATE_WINDOW.

A fixed-window counter in the cache framework: per process with the default local-memory
cache, shared by every worker when the cache is Redis (REDIS_URL). Carrying queued messages
into a new turn is not counted: only a client's request to start a turn is.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.core.cache import cache
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
    try:
        # add() is a no-op when the key exists: concurrent first turns cannot reset the count.
        await cache.aadd(key, 0, timeout=window + 1)
        count = await cache.aincr(key)
    except (RedisError, OSError) as exc:  # the cache is down (Redis restarting): not counted
        log.warning("turn rate limit: cache unavailable (%s); not counted", exc)
        return
    if count > limit:
        raise RateLimited(f"too many turns: at most {limit} per {window}s, try again in a moment")

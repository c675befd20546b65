"""What a server process does when it starts, and when it is asked to stop (drain)."""

import asyncio
import gc
import logging
import threading
import time

from django.conf import settings
from django.db import DatabaseError, close_old_connections

from chat import observe
from chat.observe.tracing import TracingConfigError
from chat.plugins import get_plugins
from chat.running import running_turns
from chat.services import deletions_finish, stale_before, turns_recover
from chat.sockets.base import sockets_close, sockets_draining

log = logging.getLogger(__name__)

# Seconds a drain waits for the seals of the turns it interrupted at its deadline.
DRAIN_SEAL_GRACE = 10.0


def single_process() -> bool:
    """An in-memory channel layer means this process is the only worker."""
    return "redis" not in settings.CHANNEL_LAYERS["default"]["BACKEND"].lower()


def on_process_start() -> None:
    """Start tracing when the environment asks, recover orphaned turns, start the sweep, load
    the allowed plugins, and get the process ready to stream.

    Turns left running by a dead process are sealed ``interrupted``: the only worker owns every
    running turn, so at its start-up all of them are orphans. With several workers only turns
    whose heartbeat went stale are, and a sweep thread keeps looking for turns whose worker
    dies later.
    """
    try:
        observe.configure()
    except TracingConfigError as exc:
        raise SystemExit(f"Dispatch tracing: {exc}") from exc
    try:
        turns_recover(stale_before=None if single_process() else stale_before())
        deletions_finish()
    except DatabaseError as exc:  # not migrated yet: nothing to recover
        log.warning("recovery skipped: %s", exc)
    if not single_process():
        threading.Thread(target=_sweep_forever, name="dispatch-sweep", daemon=True).start()
    get_plugins()  # load the allowed plugins now: a failing one is logged at start-up
    # The SDKs take seconds to import: do it now, not inside the event loop on the first turn,
    # where it would stall every socket of the worker once.
    import chat.providers.anthropic  # noqa: F401
    import chat.providers.openai  # noqa: F401

    # Everything loaded so far (Django, the SDKs, the app) lives as long as the process: keep
    # it out of the collector's generations so a full collection during streaming is short.
    gc.collect()
    gc.freeze()


def _sweep_forever() -> None:
    while True:
        time.sleep(settings.DISPATCH_STALE_SECONDS / 2)
        try:
            turns_recover(stale_before=stale_before())
        except DatabaseError as exc:  # an outage: the sweep goes on, without a traceback
            log.warning("recovery sweep failed: %s", exc)
        except Exception:  # the sweep must outlive anything
            log.exception("recovery sweep")
        finally:
            close_old_connections()


async def drain(deadline: float | None = None) -> None:
    """Shut this worker down without interrupting a turn (docs/deploy.md).

    From now on the worker takes no new turns (503) and no new sockets (closed with 4503), and
    ``/health`` answers 503 so a proxy sends traffic elsewhere. Every open socket gets its
    reconnect hint, so its client moves to another worker while the turns running here go
    on: they stream to it through the channel layer. Returns once every turn has ended
    (queued texts carried into new turns included) and the remaining sockets are closed with
    4503. Turns still running after ``deadline`` seconds (``DISPATCH_DRAIN_SECONDS``) are
    sealed ``interrupted`` after their last committed step; if their seals cannot commit
    within DRAIN_SEAL_GRACE seconds, recovery seals them once this worker is gone.
    """
    deadline = settings.DISPATCH_DRAIN_SECONDS if deadline is None else deadline
    running_turns.draining = True
    log.warning(
        "draining: %d running turn(s) may take up to %ss", len(running_turns.turns), deadline
    )
    await sockets_draining()
    try:
        async with asyncio.timeout(deadline):
            await running_turns.until_idle()
    except TimeoutError:
        count = running_turns.interrupt_all()
        log.warning("drain deadline: %d turn(s) interrupted", count)
        try:
            async with asyncio.timeout(DRAIN_SEAL_GRACE):
                await running_turns.until_idle()
        except TimeoutError:
            log.warning("drain: %d seal(s) did not commit; recovery will seal them",
                        len(running_turns.turns))  # fmt: skip
    await sockets_close()
    log.warning("drained")

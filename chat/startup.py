"""What a server process does when it starts."""

import gc
import logging
import threading
import time

from django.conf import settings
from django.db import DatabaseError, close_old_connections

from chat import observe
from chat.observe.tracing import TracingConfigError
from chat.plugins import get_plugins
from chat.services import stale_before, turns_recover

log = logging.getLogger(__name__)


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
        except Exception:  # the sweep must outlive a database hiccup
            log.exception("recovery sweep")
        finally:
            close_old_connections()

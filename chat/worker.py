"""What a server process does when it starts."""

import logging

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from chat.services import STALE_AFTER, turns_recover

log = logging.getLogger(__name__)


def single_process() -> bool:
    """An in-memory channel layer means this process is the only worker."""
    return "redis" not in settings.CHANNEL_LAYERS["default"]["BACKEND"].lower()


def on_process_start() -> None:
    """Seal turns left running by a dead process as ``interrupted``.

    The only worker owns every running turn, so at its start-up all of them are orphans. With
    several workers only turns whose heartbeat went stale are; the periodic sweep catches the rest.
    """
    try:
        turns_recover(stale_before=None if single_process() else timezone.now() - STALE_AFTER)
    except DatabaseError as exc:  # not migrated yet: nothing to recover
        log.warning("recovery skipped: %s", exc)

"""Recovery: turns whose worker died are sealed ``interrupted``; workers beat for theirs."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone

from chat.models import (
    Turn,
)
from chat.registry import registry
from chat.runtime import TurnMetrics
from chat.services.log import turn_seal

log = logging.getLogger(__name__)


def turns_recover(*, stale_before=None) -> list[str]:
    """Seal running turns whose worker is gone as ``interrupted``; their committed steps stay.

    ``stale_before=None`` seals every running turn (start-up of the only process);
    otherwise only turns whose heartbeat is older than that moment.
    """
    rows = Turn.objects.filter(status=Turn.Status.RUNNING)
    if stale_before is not None:
        rows = rows.filter(heartbeat_at__lt=stale_before)
    sealed = []
    for turn in rows:
        metrics = TurnMetrics(turn.id, "interrupted", model=turn.model or None)
        turn_seal(turn_id=turn.id, metrics=metrics)
        sealed.append(turn.id)
    if sealed:
        log.warning("recovered %d interrupted turn(s): %s", len(sealed), ", ".join(sealed))
    return sealed


def stale_before():
    """Turns whose heartbeat is older than this moment have lost their worker."""
    return timezone.now() - timedelta(seconds=settings.DISPATCH_STALE_SECONDS)


def turns_heartbeat(*, worker: str, turn_ids: list[str]) -> None:
    Turn.objects.filter(pk__in=turn_ids, worker=worker, status=Turn.Status.RUNNING).update(
        heartbeat_at=timezone.now()
    )


async def heartbeat_loop() -> None:
    """Beat for this worker's running turns so other workers' sweeps leave them alone."""
    while True:
        await asyncio.sleep(settings.DISPATCH_HEARTBEAT_SECONDS)
        try:
            turn_ids = [t.turn_id for t in registry.turns.values()]
            if turn_ids:
                await database_sync_to_async(turns_heartbeat)(
                    worker=registry.worker, turn_ids=turn_ids
                )
        except Exception:
            log.exception("heartbeat")

"""Recovery: turns whose worker died are sealed ``interrupted``; workers beat for theirs."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import DatabaseError, transaction
from django.utils import timezone

from chat import observe, selectors
from chat.models import Turn
from chat.running import running_turns
from chat.runtime import TurnMetrics
from chat.services import _log
from chat.services.events import conversation_group, publish_on_commit

log = logging.getLogger(__name__)

# A recovered turn's closing events follow whatever its dead worker sent: their index in the
# turn is past any a worker can reach, so a subscriber's feed never takes them as repeats.
RECOVERED_EVENT_INDEX = 1 << 62


def turns_recover(*, stale_before=None) -> list[str]:
    """Seal running turns whose worker is gone as ``interrupted``; their committed steps stay.

    ``stale_before=None`` seals every running turn (start-up of the only process);
    otherwise only turns whose heartbeat is older than that moment. Each seal is announced
    like a normal one, after its commit: ``done`` and ``turn-sealed`` to the turn's
    subscribers, then the conversation's status.
    """
    rows = Turn.objects.filter(status=Turn.Status.RUNNING)
    if stale_before is not None:
        rows = rows.filter(heartbeat_at__lt=stale_before)
    sealed = []
    for turn in rows:
        if _recover(turn):
            sealed.append(turn.id)
            log.warning(
                "conversation %s turn %s: its worker %s is gone; sealed as interrupted",
                turn.conversation_id, turn.id, turn.worker or "(unknown)",
            )  # fmt: skip
    return sealed


@transaction.atomic
def _recover(turn: Turn) -> bool:
    if not Turn.objects.filter(pk=turn.pk, status=Turn.Status.RUNNING).exists():
        return False  # sealed meanwhile (its worker came back, or another sweep)
    metrics = TurnMetrics(turn.id, "interrupted", model=turn.model or None, kind=turn.kind)
    conversation_id, _ = _log.turn_seal(turn_id=turn.id, metrics=metrics)
    duration_ms = round((timezone.now() - turn.started_at).total_seconds() * 1000, 3)
    group = conversation_group(conversation_id)
    base = {"conversationId": conversation_id, "turnId": turn.id}
    closing = (
        {"type": "done", **base, "reason": "interrupted", "durationMs": duration_ms},
        {"type": "turn-sealed", **base},
    )
    for offset, event in enumerate(closing):
        publish_on_commit(
            group,
            {
                "type": "chat.event",
                "event": event,
                "turn": turn.id,
                "index": RECOVERED_EVENT_INDEX + offset,
            },
        )
    status = selectors.conversation_status(conversation_id=conversation_id)
    publish_on_commit(
        group, {"type": "chat.status", "conversation": conversation_id, "status": status}
    )
    transaction.on_commit(lambda: observe.turn_interrupted(model=turn.model))
    return True


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
            turn_ids = [t.turn_id for t in running_turns.turns.values()]
            if turn_ids:
                await database_sync_to_async(turns_heartbeat)(
                    worker=running_turns.worker, turn_ids=turn_ids
                )
        except DatabaseError as exc:  # an outage: said once a beat, without a traceback
            log.warning("heartbeat failed: %s", exc)
        except Exception:
            log.exception("heartbeat")

"""Whether this worker can serve: ``GET /health`` for load balancers and operators."""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import DatabaseError, transaction
from django.utils import timezone

from chat.models import HealthProbe
from chat.running import running_turns
from chat.services.events import storage_failure


async def health_check() -> dict:
    """``{ok, database, channelLayer, draining, runningTurns}``; ``ok`` only when all is well.

    ``database`` is ``"ok"`` when a write commits (a row rewritten: a ``SELECT`` would answer
    on a full disk or a read-only database too), else ``"error: <what>"`` in a client's words;
    ``channelLayer`` when a message goes through this worker's layer and back. ``draining``:
    the worker is shutting down and takes no new turns or sockets, so a proxy must send
    traffic elsewhere. ``runningTurns``: the turns this worker runs now.
    """
    checks = {"database": "ok", "channelLayer": "ok"}
    try:
        await database_sync_to_async(_probe_write)()
    except DatabaseError as exc:
        checks["database"] = f"error: {storage_failure(exc).message}"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        layer = get_channel_layer()
        channel = await layer.new_channel("health.")
        await layer.send(channel, {"type": "ping"})
        await layer.receive(channel)
    except Exception as exc:
        checks["channelLayer"] = f"error: {type(exc).__name__}"
    draining = running_turns.draining
    ok = not draining and all(value == "ok" for value in checks.values())
    return {"ok": ok, **checks, "draining": draining, "runningTurns": len(running_turns.turns)}


@transaction.atomic
def _probe_write() -> None:
    HealthProbe.objects.update_or_create(pk=1, defaults={"checked_at": timezone.now()})

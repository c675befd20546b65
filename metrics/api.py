"""JSON API of the metrics app (SPEC §4). Mounted on the main NinjaAPI, which applies auth."""

import re

from ninja import Router, Status

from chat.models import CONVERSATION_ID_PATTERN
from chat.schemas import Error
from chat.selectors import NotFound, conversation_for_user
from metrics.selectors import conversation_turn_metrics, throughput

router = Router(tags=["metrics"])


def _error(status: int, message: str) -> Status:
    return Status(status, {"error": message})


@router.get(
    "/conversations/{conversation_id}/metrics", response={200: dict, 400: Error, 404: Error}
)
def conversation_metrics(request, conversation_id: str):
    """Every sealed turn's TurnMetrics, in order; an unknown conversation has none."""
    if not re.fullmatch(CONVERSATION_ID_PATTERN, conversation_id):
        return _error(400, f"invalid conversation id {conversation_id!r}")
    try:
        conversation = conversation_for_user(user=request.auth, conversation_id=conversation_id)
    except NotFound:
        return _error(404, f"conversation {conversation_id} not found")
    if conversation is None:
        return {"turns": []}
    turns = conversation_turn_metrics(conversation_id=conversation_id)
    return {"turns": [turn.to_wire() for turn in turns]}


@router.get("/metrics/throughput", response={200: dict, 400: Error})
def metrics_throughput(request, period: str = "day", date: str | None = None):
    """Token-weighted tokens/s per model over a day, ISO week or month (server time zone)."""
    try:
        return throughput(owner=request.auth, period=period, date=date)
    except ValueError as error:
        return _error(400, str(error))

"""JSON API of the metrics app (docs/protocol.md#5-http-api). Mounted on the main NinjaAPI, which
applies auth and maps chat.errors.DomainError to its status."""

from ninja import Router

from chat.errors import InvalidInput
from chat.schemas import Error
from chat.selectors import conversation_for_user
from chat.services.inputs import ConversationId, check
from metrics.selectors import conversation_turn_metrics, throughput

router = Router(tags=["metrics"])


@router.get(
    "/conversations/{conversation_id}/metrics",
    response={200: dict, 400: Error, 401: Error, 404: Error},
)
def conversation_metrics(request, conversation_id: str):
    """Every sealed turn's TurnMetrics, in order; an unknown conversation has none."""
    check("conversationId", ConversationId, conversation_id)
    conversation = conversation_for_user(user=request.auth, conversation_id=conversation_id)
    if conversation is None:
        return {"turns": []}
    turns = conversation_turn_metrics(conversation_id=conversation_id)
    return {"turns": [turn.to_wire() for turn in turns]}


@router.get("/metrics/throughput", response={200: dict, 400: Error, 401: Error})
def metrics_throughput(request, period: str = "day", date: str | None = None):
    """Token-weighted tokens/s per model over a day, ISO week or month (server time zone)."""
    try:
        return throughput(owner=request.auth, period=period, date=date)
    except (ValueError, OverflowError) as error:
        raise InvalidInput(str(error)) from error

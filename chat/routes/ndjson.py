"""A running turn's events as an NDJSON response (``POST /chat`` and the routes that start
turns): one compact JSON AgentEvent per line, from its first event to ``turn-sealed``."""

from __future__ import annotations

from django.http import StreamingHttpResponse

from chat import wire
from chat.running import RunningTurn

# The OpenAPI description of such a response.
NDJSON_OPENAPI = {
    "responses": {
        "200": {
            "description": "One AgentEvent per line, from the turn's first event to turn-sealed",
            "headers": {"X-Conversation-Id": {"schema": {"type": "string"}}},
            "content": {
                "application/x-ndjson": {
                    "schema": {
                        "type": "object",
                        "required": ["type", "conversationId"],
                        "properties": {
                            "type": {"type": "string"},
                            "conversationId": {"type": "string"},
                            "turnId": {"type": "string"},
                        },
                    }
                }
            },
        }
    }
}


def turn_events_response(running: RunningTurn) -> StreamingHttpResponse:
    """Stream the turn's events; a client that goes away stops only its stream."""
    queue = running.listen()

    async def lines():
        try:
            while True:
                event = await queue.get()
                if event is None:  # stopped while its seal waits for the database
                    return
                yield wire.dumps(event) + "\n"
                if event["type"] == "turn-sealed":
                    return
        finally:
            # The client may go away: the turn goes on, only this listener stops.
            running.listeners.discard(queue)

    response = StreamingHttpResponse(lines(), content_type="application/x-ndjson")
    response["X-Conversation-Id"] = running.conversation_id
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response

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


class _Lines(StreamingHttpResponse):
    """A streaming response whose lines (bytes already) go to the server as they come.

    Django's ``__aiter__`` passes every part through two more asynchronous generators (its own
    and ``streaming_content``'s, which re-encodes it through ``make_bytes``); for a line per
    token that was more work than the line itself (docs/benchmarks.md, finding 23). Only the
    asynchronous path is shortened: ``streaming_content`` and the synchronous iteration
    Django's test client uses are unchanged.
    """

    def __aiter__(self):
        return self._iterator


def turn_events_response(running: RunningTurn) -> StreamingHttpResponse:
    """Stream the turn's events; a client that goes away stops only its stream."""
    queue = running.listen()

    async def lines():
        try:
            while True:
                event = await queue.get()
                if event is None:  # stopped while its seal waits for the database
                    return
                yield wire.line(event)
                if event["type"] == "turn-sealed":
                    return
        finally:
            # The client may go away: the turn goes on, only this listener stops.
            running.listeners.discard(queue)

    response = _Lines(lines(), content_type="application/x-ndjson")
    response["X-Conversation-Id"] = running.conversation_id
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response

"""Backend-declared UI data (docs/protocol.md#7-surfaces): specs any client renders generically.

Built-in surfaces: ``message-queue`` (per conversation) and ``tools`` (the loaded tools).
Field values of ``stat`` fields are strings, as the surface contract says.
"""

from __future__ import annotations

from channels.db import database_sync_to_async

from chat import selectors, services
from chat.errors import InvalidInput
from chat.tools import get_tool_registry

CATALOG = [
    {"id": "message-queue", "region": "conversation", "title": "Queued messages"},
    {"id": "tools", "region": "sidebar", "title": "Tools"},
]
SURFACE_IDS = {entry["id"] for entry in CATALOG}
CANCEL_PREFIX = "cancel:"


def queue_spec(queue: list[dict]) -> dict:
    fields: list[dict] = [{"kind": "stat", "label": "Queued", "value": str(len(queue))}]
    for item in queue:
        fields.append(
            {
                "kind": "button",
                "label": f"Cancel: {item['text'][:60]}",
                "action": {"actionId": CANCEL_PREFIX + item["id"]},
            }
        )
    return {
        "id": "message-queue",
        "region": "conversation",
        "title": "Queued messages",
        "fields": fields,
    }


def tools_spec() -> dict:
    fields = [
        {"kind": "stat", "label": entry["name"], "value": str(entry["state"])}
        for entry in get_tool_registry().state()
    ]
    return {"id": "tools", "region": "sidebar", "title": "Tools", "fields": fields}


async def surface_spec(*, user, surface_id: str, conversation_id: str | None) -> dict:
    """The surface's spec for this user. ``message-queue`` without a conversation is empty
    (a client subscribes before it has one)."""
    if surface_id == "tools":
        return tools_spec()
    if surface_id == "message-queue":
        if not conversation_id:
            return queue_spec([])
        await database_sync_to_async(selectors.conversation_for_user)(
            user=user, conversation_id=conversation_id
        )
        queue = await database_sync_to_async(selectors.queue_list)(conversation_id=conversation_id)
        return queue_spec(queue)
    raise InvalidInput(f"unknown surface: {surface_id}")


async def surface_invoke(
    *, user, surface_id: str, action_id: str, conversation_id: str | None
) -> dict:
    """Run a surface action; returns the surface's new spec."""
    if surface_id == "message-queue" and action_id.startswith(CANCEL_PREFIX) and conversation_id:
        _, queue = await services.queue_cancel(
            user=user, conversation_id=conversation_id, message_id=action_id[len(CANCEL_PREFIX) :]
        )
        return queue_spec(queue)
    if surface_id in SURFACE_IDS:
        raise InvalidInput(f"unknown action {action_id!r} for surface {surface_id}")
    raise InvalidInput(f"unknown surface: {surface_id}")

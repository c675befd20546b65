"""The WebSocket JSON protocol for API clients (docs/protocol.md#6-websocket-json-protocol).

Thin: each operation hands the frame's fields to a service (chat.services) and maps the
result; events arrive from the conversation's channel-layer group through a chat.feeds.TurnFeed
per subscription (replay of the running turn, then live, with no gap and no duplicate).
"""

from __future__ import annotations

import uuid

from chat import services, surfaces
from chat.errors import InvalidInput
from chat.feeds import TurnFeed
from chat.models import group_name_for
from chat.services.inputs import ConversationId, check
from chat.sockets.base import BaseSocket

SURFACE_OPS = {"subscribe", "unsubscribe", "invoke"}


class ApiSocket(BaseSocket):
    kind = "api"
    # One socket carries many conversations: a chat.send waiting for its turn to start must
    # not hold up the live events of the others (chat.overrides.consumer). A new feed holds
    # its live events until the replay that follows the subscribing frame.
    SEPARATE_LANES = True

    async def opened(self) -> None:
        self.subscriptions: dict[str, TurnFeed] = {}
        self.surface_subscriptions: set[tuple[str, str | None]] = set()
        await self.send_json({"type": "catalog", "catalog": surfaces.CATALOG})

    async def closed(self) -> None:
        watched = set(self.subscriptions) | {c for _, c in self.surface_subscriptions if c}
        for conversation_id in watched:
            await self.channel_layer.group_discard(
                group_name_for(conversation_id), self.channel_name
            )

    async def draining(self) -> None:
        # docs/protocol.md#65-reconnecting: open a new socket, subscribe again; the replay fills in.
        await self.send_json({"type": "reconnect", "reason": "shutdown"})

    async def refuse(self, message: str, frame: dict | None) -> None:
        # Surface ops answer failures with `error`, chat ops with `chat.error`.
        kind = "error" if frame is not None and frame.get("type") in SURFACE_OPS else "chat.error"
        reply = {"type": kind, "message": message}
        conversation_id = frame.get("conversationId") if frame is not None else None
        if isinstance(conversation_id, str):
            reply["conversationId"] = conversation_id
        await self.send_json(reply)

    # ------------------------------------------------------------------ operations

    async def op_send(self, frame: dict) -> None:
        conversation_id = frame.get("conversationId")
        if conversation_id is None:
            conversation_id = str(uuid.uuid4())
        check("conversationId", ConversationId, conversation_id)
        await self._start_subscribed(
            conversation_id,
            lambda: services.turn_start(
                user=self.user,
                conversation_id=conversation_id,
                message=frame.get("message"),
                model=frame.get("model"),
                reasoning_effort=frame.get("reasoningEffort"),
                cwd=frame.get("cwd"),
                attachments=frame.get("attachments"),
            ),
        )

    async def op_compact(self, frame: dict) -> None:
        """Compact the conversation now (docs/protocol.md#24-compaction): like ``chat.send``,
        it subscribes the sender, and the compaction turn's events arrive as ``chat.delta``."""
        conversation_id = check("conversationId", ConversationId, frame.get("conversationId"))
        await self._start_subscribed(
            conversation_id,
            lambda: services.conversation_compact(user=self.user, conversation_id=conversation_id),
        )

    async def _start_subscribed(self, conversation_id: str, start) -> None:
        """Subscribe the sender, then ``start()`` a turn in the conversation; a refused start
        leaves no subscription behind. The service checks the ownership (NotFound for someone
        else's conversation) in the same round trip to the database as the rest of its checks;
        until then the feed delivers nothing of a conversation that is not the user's
        (``deliver``)."""
        subscribed = conversation_id in self.subscriptions
        await self._subscribe(conversation_id, checked=False)
        try:
            await start()
        except BaseException:
            if not subscribed:
                await self._unsubscribe(conversation_id)
            raise
        self.ownership.claim(conversation_id)
        # The turn runs here: its events so far come straight from this process, so the sender
        # misses none even if the channel layer dropped the first ones (e.g. while its Redis
        # subscription was still being set up); the group's copies are deduplicated.
        await self.subscriptions[conversation_id].replay(reply_to=self.channel_name)

    async def op_subscribe(self, frame: dict) -> None:
        conversation_id = check("conversationId", ConversationId, frame.get("conversationId"))
        feed = await self._subscribe(conversation_id)
        await feed.replay(reply_to=self.channel_name)

    async def op_unsubscribe(self, frame: dict) -> None:
        conversation_id = check("conversationId", ConversationId, frame.get("conversationId"))
        await self._unsubscribe(conversation_id)

    async def op_queue(self, frame: dict) -> None:
        await services.queue_add(
            user=self.user, conversation_id=frame.get("conversationId"), text=frame.get("text")
        )

    async def op_queue_cancel(self, frame: dict) -> None:
        cancelled, _ = await services.queue_cancel(
            user=self.user,
            conversation_id=frame.get("conversationId"),
            message_id=frame.get("messageId"),
        )
        if not cancelled:
            raise InvalidInput(f"no queued message {frame['messageId']}")

    async def op_surface_subscribe(self, frame: dict) -> None:
        surface_id, conversation_id = _surface_ref(frame)
        spec = await surfaces.surface_spec(
            user=self.user, surface_id=surface_id, conversation_id=conversation_id
        )
        self.surface_subscriptions.add((surface_id, conversation_id))
        if conversation_id and conversation_id not in self.subscriptions:
            # Queue updates travel on the conversation's group.
            await self.channel_layer.group_add(group_name_for(conversation_id), self.channel_name)
        await self.send_json({"type": "surface", **_with_conversation({"spec": spec}, frame)})

    async def op_surface_unsubscribe(self, frame: dict) -> None:
        surface_id, conversation_id = _surface_ref(frame)
        self.surface_subscriptions.discard((surface_id, conversation_id))
        if conversation_id:
            await self._leave_if_unwatched(conversation_id)

    async def op_invoke(self, frame: dict) -> None:
        surface_id, conversation_id = _surface_ref(frame)
        action_id = frame.get("actionId")
        if not isinstance(action_id, str):
            raise InvalidInput("must be a string", field="actionId")
        spec = await surfaces.surface_invoke(
            user=self.user,
            surface_id=surface_id,
            action_id=action_id,
            conversation_id=conversation_id,
        )
        update = _with_conversation({"surfaceId": surface_id, "spec": spec}, frame)
        await self.send_json({"type": "update", "update": update})

    OPS = {
        "chat.send": op_send,
        "chat.subscribe": op_subscribe,
        "chat.unsubscribe": op_unsubscribe,
        "chat.queue": op_queue,
        "chat.queue.cancel": op_queue_cancel,
        "chat.compact": op_compact,
        "subscribe": op_surface_subscribe,
        "unsubscribe": op_surface_unsubscribe,
        "invoke": op_invoke,
    }

    # ------------------------------------------------------------------ subscriptions

    async def _subscribe(self, conversation_id: str, *, checked: bool = True) -> TurnFeed:
        """Join the conversation's group (NotFound if it is someone else's, unless the caller
        checks that itself: ``checked=False``); its feed."""
        if checked:
            await self.ownership.require(conversation_id)
        feed = self.subscriptions.get(conversation_id)
        if feed is None:

            async def deliver(message: dict) -> None:
                if await self.ownership.owns(conversation_id):
                    await self.send_json({"type": "chat.delta", "event": message["event"]})

            feed = self.subscriptions[conversation_id] = TurnFeed(
                conversation_id, deliver, held=True
            )
            await self.channel_layer.group_add(group_name_for(conversation_id), self.channel_name)
        return feed

    async def _unsubscribe(self, conversation_id: str) -> None:
        if self.subscriptions.pop(conversation_id, None) is not None:
            await self._leave_if_unwatched(conversation_id)

    async def _leave_if_unwatched(self, conversation_id: str) -> None:
        """Leave the conversation's group unless a chat or surface subscription still needs it."""
        watched = conversation_id in self.subscriptions or any(
            ref == conversation_id for _, ref in self.surface_subscriptions
        )
        if not watched:
            await self.channel_layer.group_discard(
                group_name_for(conversation_id), self.channel_name
            )

    # ------------------------------------------------------------------ group messages

    async def chat_event(self, message: dict) -> None:
        feed = self.subscriptions.get(message["event"]["conversationId"])
        if feed is not None:
            await feed.on_event(message)

    async def chat_replay(self, message: dict) -> None:
        feed = self.subscriptions.get(message["conversation"])
        if feed is not None:
            await feed.on_replay(message)

    async def chat_status(self, message: dict) -> None:
        conversation_id = message["conversation"]
        if conversation_id not in self.subscriptions:
            return
        if not await self.ownership.owns(conversation_id):
            return
        await self.send_json(
            {
                "type": "conversation.statusChanged",
                "conversationId": conversation_id,
                "status": message["status"],
            }
        )

    async def chat_queue(self, message: dict) -> None:
        conversation_id = message["conversation"]
        if ("message-queue", conversation_id) not in self.surface_subscriptions:
            return
        if not await self.ownership.owns(conversation_id):
            return
        update = {
            "surfaceId": "message-queue",
            "spec": surfaces.queue_spec(message["queue"]),
            "conversationId": conversation_id,
        }
        await self.send_json({"type": "update", "update": update})

    async def chat_deleted(self, message: dict) -> None:
        """A subscribed conversation was deleted: say so (its id answers 404 from now on)."""
        conversation_id = message["conversation"]
        if conversation_id in self.subscriptions:
            await self.send_json(
                {"type": "conversation.deleted", "conversationId": conversation_id}
            )

    async def chat_prompt(self, message: dict) -> None:
        """A system prompt changed: read it with GET …/system-prompt (no frame)."""

    async def user_presets(self, message: dict) -> None:
        """The user's presets changed: the web app's news, not part of this protocol."""

    async def conversation_open(self, message: dict) -> None:
        await self.send_json(
            {"type": "conversation.open", "conversationId": message["conversation"]}
        )

    async def user_conversations(self, message: dict) -> None:
        """The user's list or tabs changed: the web app's news, not part of this protocol."""


def _surface_ref(frame: dict) -> tuple[str, str | None]:
    surface_id = frame.get("surfaceId")
    if not isinstance(surface_id, str):
        raise InvalidInput("must be a string", field="surfaceId")
    conversation_id = frame.get("conversationId")
    if conversation_id is not None:
        check("conversationId", ConversationId, conversation_id)
    return surface_id, conversation_id


def _with_conversation(body: dict, frame: dict) -> dict:
    if frame.get("conversationId"):
        body["conversationId"] = frame["conversationId"]
    return body

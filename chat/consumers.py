"""WebSocket transport for API clients: the JSON protocol of SPEC §5.

Thin: frames are validated with chat.schemas and handed to chat.services; events arrive from
the conversation's channel-layer group, through a chat.feeds.TurnFeed per subscription (replay
of the running turn, then live, with no gap and no duplicate).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from pydantic import ValidationError

from chat import services, surfaces
from chat.feeds import TurnFeed
from chat.models import Conversation, group_name_for
from chat.ratelimit import TurnRateLimited
from chat.schemas import (
    ChatIn,
    ConversationRef,
    InvokeFrame,
    QueueCancelFrame,
    QueueFrame,
    SurfaceFrame,
)
from chat.selectors import NotFound

log = logging.getLogger(__name__)

UNAUTHORIZED = 4401
SURFACE_OPS = {"subscribe", "unsubscribe", "invoke"}


def user_group(user) -> str:
    return f"user.{user.pk}"


INBOX_SIZE = 64  # messages read ahead of dispatch, from the socket and the channel layer


class DirectDispatch:
    """Run a consumer on the socket and its channel with less per-message work than Channels.

    - Channels runs ``close_old_connections()`` in the process's one sync thread before every
      message, so each message (a live event, a ``conversation.open`` to all of a user's
      sockets) would wait behind all the database work of the process: turn starts and seals
      under load. These consumers reach the database only through ``database_sync_to_async``,
      which closes old connections itself.
    - Channels' ``await_many_dispatch`` makes a task and an ``asyncio.wait`` per message; here
      one reader per source feeds a bounded inbox, and messages are dispatched in arrival
      order, one at a time, as before (docs/benchmarks.md).
    """

    async def __call__(self, scope, receive, send) -> None:
        """``AsyncConsumer.__call__`` with the inbox in place of ``await_many_dispatch``."""
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = await self.channel_layer.new_channel()
        self.channel_receive = functools.partial(self.channel_layer.receive, self.channel_name)
        self.base_send = send
        inbox: asyncio.Queue[tuple[dict | None, BaseException | None]] = asyncio.Queue(INBOX_SIZE)

        async def read(source) -> None:
            try:
                while True:
                    await inbox.put((await source(), None))
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # the consumer raises it, as Channels would
                await inbox.put((None, exc))

        readers = [asyncio.create_task(read(source)) for source in (receive, self.channel_receive)]
        try:
            while True:
                message, error = await inbox.get()
                if error is not None:
                    raise error
                await self.dispatch(message)
        except StopConsumer:
            pass
        finally:
            for reader in readers:
                reader.cancel()
            await asyncio.gather(*readers, return_exceptions=True)

    async def dispatch(self, message: dict) -> None:
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"no handler for message type {message['type']}")
        await handler(message)


class ChatConsumer(DirectDispatch, AsyncJsonWebsocketConsumer):
    async def connect(self):
        self.user = self.scope.get("user")
        await self.accept()
        if self.user is None or not self.user.is_authenticated:
            await self.close(code=UNAUTHORIZED)
            return
        self.subscriptions: dict[str, TurnFeed] = {}
        self.surface_subscriptions: set[tuple[str, str | None]] = set()
        # Conversations seen to be this user's, or someone else's (an owner never changes).
        self.owned: set[str] = set()
        self.foreign: set[str] = set()
        await self.channel_layer.group_add(user_group(self.user), self.channel_name)
        await self.send_json({"type": "catalog", "catalog": surfaces.CATALOG})

    async def disconnect(self, code):
        # Dropping subscriptions never affects a turn.
        if not hasattr(self, "subscriptions"):
            return  # refused before it subscribed to anything
        for conversation_id in list(self.subscriptions):
            await self.channel_layer.group_discard(
                group_name_for(conversation_id), self.channel_name
            )
        await self.channel_layer.group_discard(user_group(self.user), self.channel_name)

    # ------------------------------------------------------------------ frames in

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        if text_data is None:
            await self._error("frames must be JSON text")
            return
        try:
            frame = json.loads(text_data)
        except ValueError:
            await self._error("malformed frame: not JSON")
            return
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            await self._error("malformed frame: expected an object with a string 'type'")
            return
        handler = self.OPS.get(frame["type"])
        if handler is None:
            await self._error(f"unknown frame type: {frame['type'][:80]}")
            return
        conversation_id = frame.get("conversationId")
        conversation_id = conversation_id if isinstance(conversation_id, str) else None
        # Surface ops answer failures with `error`, chat ops with `chat.error` (SPEC §5).
        kind = "error" if frame["type"] in SURFACE_OPS else "chat.error"
        try:
            await handler(self, frame)
        except ValidationError as exc:
            await self._error(_describe(exc), conversation_id, kind)
        except NotFound:
            await self._error(f"conversation not found: {conversation_id}", conversation_id, kind)
        except (
            services.Conflict,
            services.InvalidInput,
            surfaces.SurfaceError,
            TurnRateLimited,
        ) as exc:
            await self._error(str(exc), conversation_id, kind)
        except Exception:
            log.exception("socket frame %s failed", frame["type"])
            await self._error("internal error", conversation_id, kind)

    async def _error(
        self, message: str, conversation_id: str | None = None, kind: str = "chat.error"
    ) -> None:
        frame = {"type": kind, "message": message}
        if conversation_id:
            frame["conversationId"] = conversation_id
        await self.send_json(frame)

    async def op_send(self, frame: dict) -> None:
        payload = ChatIn.model_validate(frame)
        turn_request = payload.turn_request()
        conversation_id = turn_request.conversation_id
        created = not await self._subscribe(conversation_id, replay=False)
        await services.turn_start(user=self.user, request=turn_request)
        self.owned.add(conversation_id)  # the turn started: the conversation is this user's
        # The turn runs here: its events so far come straight from the registry, so the sender
        # misses none even if the channel layer dropped the first ones (e.g. while its Redis
        # subscription was still being set up); the group's copies are deduplicated.
        await self.subscriptions[conversation_id].replay(reply_to=self.channel_name)
        if created:
            await self.channel_layer.group_send(
                user_group(self.user),
                {"type": "conversation.open", "conversation": conversation_id},
            )

    async def op_subscribe(self, frame: dict) -> None:
        ref = ConversationRef.model_validate(frame)
        await self._subscribe(ref.conversationId, replay=True)

    async def op_unsubscribe(self, frame: dict) -> None:
        ref = ConversationRef.model_validate(frame)
        if self.subscriptions.pop(ref.conversationId, None) is not None:
            await self.channel_layer.group_discard(
                group_name_for(ref.conversationId), self.channel_name
            )

    async def op_queue(self, frame: dict) -> None:
        payload = QueueFrame.model_validate(frame)
        await services.queue_enqueue(
            user=self.user, conversation_id=payload.conversationId, text=payload.text
        )

    async def op_queue_cancel(self, frame: dict) -> None:
        payload = QueueCancelFrame.model_validate(frame)
        cancelled, _ = await services.queue_remove(
            user=self.user, conversation_id=payload.conversationId, message_id=payload.messageId
        )
        if not cancelled:
            await self._error(f"no queued message {payload.messageId}", payload.conversationId)

    async def op_surface_subscribe(self, frame: dict) -> None:
        payload = SurfaceFrame.model_validate(frame)
        spec = await surfaces.surface_spec(
            user=self.user, surface_id=payload.surfaceId, conversation_id=payload.conversationId
        )
        self.surface_subscriptions.add((payload.surfaceId, payload.conversationId))
        if payload.conversationId and payload.conversationId not in self.subscriptions:
            # Queue updates travel on the conversation's group.
            await self.channel_layer.group_add(
                group_name_for(payload.conversationId), self.channel_name
            )
        await self.send_json({"type": "surface", **_with_conversation({"spec": spec}, payload)})

    async def op_surface_unsubscribe(self, frame: dict) -> None:
        payload = SurfaceFrame.model_validate(frame)
        self.surface_subscriptions.discard((payload.surfaceId, payload.conversationId))

    async def op_invoke(self, frame: dict) -> None:
        payload = InvokeFrame.model_validate(frame)
        spec = await surfaces.surface_invoke(
            user=self.user,
            surface_id=payload.surfaceId,
            action_id=payload.actionId,
            conversation_id=payload.conversationId,
        )
        update = _with_conversation({"surfaceId": payload.surfaceId, "spec": spec}, payload)
        await self.send_json({"type": "update", "update": update})

    OPS = {
        "chat.send": op_send,
        "chat.subscribe": op_subscribe,
        "chat.unsubscribe": op_unsubscribe,
        "chat.queue": op_queue,
        "chat.queue.cancel": op_queue_cancel,
        "subscribe": op_surface_subscribe,
        "unsubscribe": op_surface_unsubscribe,
        "invoke": op_invoke,
    }

    # ------------------------------------------------------------------ subscriptions

    async def _subscribe(self, conversation_id: str, *, replay: bool) -> bool:
        """Join the conversation's group (NotFound if it is someone else's); whether it exists."""
        conversation = await _conversation(conversation_id)
        if conversation is not None and conversation.owner_id != self.user.pk:
            raise NotFound(conversation_id)
        if conversation is not None:
            self.owned.add(conversation_id)
        feed = self.subscriptions.get(conversation_id)
        if feed is None:

            async def deliver(message: dict) -> None:
                if await self._owns(conversation_id):
                    await self.send_json({"type": "chat.delta", "event": message["event"]})

            feed = self.subscriptions[conversation_id] = TurnFeed(conversation_id, deliver)
            await self.channel_layer.group_add(group_name_for(conversation_id), self.channel_name)
        if replay:
            await feed.replay(reply_to=self.channel_name)
        return conversation is not None

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
        if conversation_id not in self.subscriptions or not await self._owns(conversation_id):
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
        if not await self._owns(conversation_id):
            return
        update = {
            "surfaceId": "message-queue",
            "spec": surfaces.queue_spec(message["queue"]),
            "conversationId": conversation_id,
        }
        await self.send_json({"type": "update", "update": update})

    async def _owns(self, conversation_id: str) -> bool:
        """Whether the conversation is this user's. A subscription may predate the
        conversation (and so its owner): whoever creates it, only its owner gets its news."""
        if conversation_id in self.owned:
            return True
        if conversation_id in self.foreign:
            return False  # no query per event of someone else's turn
        conversation = await _conversation(conversation_id)
        if conversation is None:
            return False
        mine = conversation.owner_id == self.user.pk
        (self.owned if mine else self.foreign).add(conversation_id)
        return mine

    async def conversation_open(self, message: dict) -> None:
        await self.send_json(
            {"type": "conversation.open", "conversationId": message["conversation"]}
        )


def _with_conversation(body: dict, payload) -> dict:
    if payload.conversationId:
        body["conversationId"] = payload.conversationId
    return body


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()))
        parts.append(f"{where}: {err.get('msg')}" if where else err.get("msg", "invalid"))
    return "invalid frame: " + "; ".join(parts)


@database_sync_to_async
def _conversation(conversation_id: str) -> Conversation | None:
    return Conversation.objects.filter(pk=conversation_id).first()

"""What every Dispatch WebSocket shares: the message loop, sign-in, limits, ownership, errors.

A socket subclass names its operations (``OPS``: frame name → handler) and how it tells a
client about a refusal (``refuse``); this base does the rest the same way for all of them:

- the loop is chat.overrides.consumer.DirectDispatch (no per-message task or database hop);
- a socket whose ASGI scope has no signed-in user (chat.auth.WebSocketAuthMiddleware: session
  cookie, bearer header or ``?token=``) is closed with 4401; the Origin check is the ASGI
  middleware in front of every socket (chat.auth.WebSocketOriginValidator);
- a frame longer than ``DISPATCH_MAX_FRAME_CHARS``, not JSON, nested too deeply or not an object
  is refused, and the socket stays open;
- a handler's chat.errors.DomainError is refused with its message; anything else is logged and
  refused as "internal error" (never a traceback or SQL to the client);
- ``ownership`` remembers which conversations are this user's and which are someone else's
  (an owner never changes), so events of other users' turns cost no query.

Every socket joins its user's group (chat.services.events.user_group) and receives what the
services announce there.

A worker that shuts down (chat.startup.drain) takes no new sockets — they are closed at once
with 4503, "reconnect" to clients and the web app — hands every open socket a reconnect hint
(``draining``) and closes the rest with 4503 when it exits. (The registered codes 1012 and 1013
would say the same, but Daphne's WebSocket library lets a server close with 1000 or
3000–4999 only.)
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.db import InternalError, OperationalError

from chat import observe, selectors, wire
from chat.errors import DomainError, NotFound
from chat.overrides.consumer import DirectDispatch
from chat.running import running_turns
from chat.services.events import storage_failure, user_group

log = logging.getLogger(__name__)

UNAUTHORIZED = 4401
GOING_AWAY = 4503  # this worker shuts down: reconnect (through the proxy, to another one)
MAX_DEPTH = 64  # nesting of a frame's JSON

Handler = Callable[[Any, dict], Awaitable[None]]
# The signed-in sockets of this process, for a shutdown's hints (its consumers, not weakly:
# a socket leaves when it disconnects).
OPEN_SOCKETS: set[BaseSocket] = set()


class Refused(Exception):
    """A frame the socket will not handle (malformed, too large, unknown operation)."""


class Ownership:
    """Which conversations are this user's: asked once each, then remembered."""

    def __init__(self, user) -> None:
        self.user = user
        self.mine: set[str] = set()
        self.foreign: set[str] = set()

    def claim(self, conversation_id: str) -> None:
        """The conversation was seen to be the user's (e.g. they started a turn in it)."""
        self.mine.add(conversation_id)

    async def owns(self, conversation_id: str) -> bool:
        """Whether it exists and is this user's. A socket may watch an id before it exists
        (a draft): whoever creates it, only its owner gets its news."""
        if conversation_id in self.mine:
            return True
        if conversation_id in self.foreign:
            return False  # no query per event of someone else's turn
        owner = await database_sync_to_async(selectors.conversation_owner_id)(
            conversation_id=conversation_id
        )
        if owner is None:
            return False  # not yet: whoever creates it decides
        (self.mine if owner == self.user.pk else self.foreign).add(conversation_id)
        return owner == self.user.pk

    async def require(self, conversation_id: str) -> bool:
        """Whether it exists; NotFound when it is someone else's."""
        if await self.owns(conversation_id):
            return True
        if conversation_id in self.foreign:
            raise NotFound.conversation(conversation_id)
        return False


async def sockets_draining() -> None:
    """Hand every open socket of this process its reconnect hint (``BaseSocket.draining``)."""
    await asyncio.gather(*(_quietly(sock.draining()) for sock in list(OPEN_SOCKETS)))


async def sockets_close() -> None:
    """Close every open socket of this process with 4503 (reconnect)."""
    await asyncio.gather(*(_quietly(sock.close(code=GOING_AWAY)) for sock in list(OPEN_SOCKETS)))


async def _quietly(work) -> None:
    try:
        await work
    except Exception:  # a socket closing meanwhile must not stop the others
        log.exception("socket hint or close failed")


class BaseSocket(DirectDispatch, AsyncWebsocketConsumer):
    OPS: ClassVar[dict[str, Handler]] = {}
    op_key: ClassVar[str] = "type"  # the frame field naming the operation
    kind: ClassVar[str] = ""  # for metrics: ``api`` or ``webapp``

    async def connect(self) -> None:
        self.user = self.scope.get("user")
        await self.accept()
        if running_turns.draining:  # shutting down: the client reconnects to another worker
            await self.close(code=GOING_AWAY)
            return
        if self.user is None or not self.user.is_authenticated:
            await self.close(code=UNAUTHORIZED)
            return
        self.ownership = Ownership(self.user)
        self.user_group = user_group(self.user.pk)
        await self.channel_layer.group_add(self.user_group, self.channel_name)
        self.joined = self.ready = True
        observe.socket_opened(self.kind)
        OPEN_SOCKETS.add(self)
        await self.opened()

    async def reject(self, code: int) -> None:
        """Close the socket from ``opened``; frames that were already sent are ignored."""
        self.ready = False
        await self.close(code=code)

    async def disconnect(self, code) -> None:
        OPEN_SOCKETS.discard(self)
        if not getattr(self, "joined", False):
            return  # refused before it joined anything
        observe.socket_closed(self.kind)
        await self.closed()
        await self.channel_layer.group_discard(self.user_group, self.channel_name)

    async def opened(self) -> None:
        """The socket is signed in and joined its user's group."""

    async def closed(self) -> None:
        """The socket went away: leave what ``opened`` joined (never affects a turn)."""

    async def refuse(self, message: str, frame: dict | None) -> None:
        """Tell the client a frame was refused (and why)."""
        raise NotImplementedError

    async def draining(self) -> None:
        """This worker shuts down: tell the client to reconnect (it lands on another worker).
        The socket keeps working until the worker exits; then it is closed with 4503."""

    async def send(self, text_data=None, bytes_data=None, close=False) -> None:
        """Channels' ``send``; a text frame is written to the connection directly when it can
        be (chat/overrides/ws_send.py)."""
        if text_data is not None and bytes_data is None and not close:
            write = self._write_text
            if write is not None and write(text_data):
                return
        await super().send(text_data=text_data, bytes_data=bytes_data, close=close)

    async def send_json(self, content: dict) -> None:
        await self.send(text_data=wire.dumps(content))

    # ------------------------------------------------------------------ frames in

    async def receive(self, text_data=None, bytes_data=None, **kwargs) -> None:
        if not getattr(self, "ready", False):
            return  # closing: refused at connect
        frame = None
        try:
            frame = self.parse(text_data)
            handler = self.OPS.get(frame[self.op_key])
            if handler is None:
                raise Refused(f"unknown {self.op_key}: {str(frame[self.op_key])[:80]}")
            with observe.socket_frame(self.scope, frame[self.op_key]):
                await handler(self, frame)
        except Refused as exc:
            await self.refuse(str(exc), frame)
        except DomainError as exc:
            await self.refuse(exc.message, frame)
        except (OperationalError, InternalError) as exc:  # a read the database refused
            log.warning("socket frame %r: %s", frame and frame.get(self.op_key), exc)
            await self.refuse(storage_failure(exc).message, frame)
        except Exception:
            log.exception("socket frame %r failed", frame and frame.get(self.op_key))
            await self.refuse("internal error", frame)

    def parse(self, text: str | None) -> dict:
        """The frame as a JSON object naming its operation; Refused otherwise."""
        if text is None:
            raise Refused("frames must be JSON text")
        limit = settings.DISPATCH_MAX_FRAME_CHARS
        if len(text) > limit:
            raise Refused(f"frame too large: at most {limit:,} characters")
        try:
            frame = json.loads(text)
        except RecursionError:
            raise Refused("malformed frame: nested too deeply") from None
        except ValueError:
            raise Refused("malformed frame: not JSON") from None
        if not isinstance(frame, dict) or not isinstance(frame.get(self.op_key), str):
            raise Refused(f"malformed frame: expected an object with a string {self.op_key!r}")
        if _depth(frame) > MAX_DEPTH:
            raise Refused("malformed frame: nested too deeply")
        return frame


def _depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """How deeply ``value`` nests (counting stops a little past ``limit``)."""
    depth, level = 0, [value]
    while level and depth <= limit:
        depth += 1
        level = [
            child
            for item in level
            if isinstance(item, dict | list)
            for child in (item.values() if isinstance(item, dict) else item)
        ]
    return depth

"""The web app's socket (htmx ws extension): form frames in, HTML fragments out.

One socket per page, showing one conversation. On connect it joins the conversation's group,
reads the committed history, then follows the running turn through a chat.feeds.TurnFeed
(replay, then live, no gap and no duplicate), like chat.consumers.ChatConsumer. The running turn is folded into a LiveTurn and only what
changed is pushed, as ``hx-swap-oob`` fragments. Deltas (the hottest path) never render
Markdown directly: they mark the step dirty and a flush at most every FLUSH_INTERVAL seconds
re-renders it; every other event flushes at once. At ``turn-sealed`` the turn is replaced by
its rendering from the database, the same a reload shows.

The socket also joins the groups of the user's other tabs, for their spinners (status).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.template.loader import render_to_string

from chat import services, views
from chat.consumers import UNAUTHORIZED, DirectDispatch
from chat.feeds import TurnFeed
from chat.models import CONVERSATION_ID_PATTERN, REASONING_EFFORTS, group_name_for
from chat.registry import registry
from chat.selectors import NotFound, conversation_for_user, queue_list
from chat.transcript import DELTAS, LiveTurn

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 0.1  # seconds: the most often a streaming step is re-rendered
TITLE_MAX = 200


def _oob_append(target: str, inner: str) -> str:
    return f'<div hx-swap-oob="beforeend:#{target}">{inner}</div>'


class UIConsumer(DirectDispatch, AsyncWebsocketConsumer):
    async def connect(self):
        self.user = self.scope.get("user")
        await self.accept()
        if self.user is None or not self.user.is_authenticated:
            await self.close(code=UNAUTHORIZED)
            return
        query = parse_qs(self.scope.get("query_string", b"").decode())
        conversation_id = (query.get("conversation") or [""])[0]
        if not re.fullmatch(CONVERSATION_ID_PATTERN, conversation_id):
            await self.close(code=4404)
            return
        try:
            existing = await database_sync_to_async(conversation_for_user)(
                user=self.user, conversation_id=conversation_id
            )
        except NotFound:
            await self.close(code=4404)
            return
        self.conversation_id = conversation_id
        # A draft's conversation does not exist yet: until it does and is seen to be this
        # user's, nothing about it is shown (someone else could create that id). None: not
        # decided yet; a conversation's owner never changes, so a decision is final.
        self.owned: bool | None = True if existing is not None else None
        self.live: LiveTurn | None = None
        self.feed = TurnFeed(conversation_id, self._on_event)
        self.history_seq = 0
        self.watched: set[str] = set()
        self._flush_handle: asyncio.TimerHandle | None = None
        self._last_flush = 0.0
        await self.channel_layer.group_add(services.tabs_group_for(self.user.pk), self.channel_name)
        await self._watch(await self._tab_ids() | {conversation_id})
        seq = (query.get("seq") or [""])[0]
        await self._resync(int(seq) if seq.isdigit() else None, full="resync" in query)

    async def disconnect(self, code):
        if not hasattr(self, "watched"):
            return
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        for conversation_id in self.watched:
            await self.channel_layer.group_discard(
                group_name_for(conversation_id), self.channel_name
            )
        await self.channel_layer.group_discard(
            services.tabs_group_for(self.user.pk), self.channel_name
        )

    # ------------------------------------------------------------------ subscription

    async def _watch(self, conversation_ids: set[str]) -> None:
        conversation_ids |= {self.conversation_id}
        for conversation_id in conversation_ids - self.watched:
            await self.channel_layer.group_add(group_name_for(conversation_id), self.channel_name)
        for conversation_id in self.watched - conversation_ids:
            await self.channel_layer.group_discard(
                group_name_for(conversation_id), self.channel_name
            )
        self.watched = conversation_ids

    @database_sync_to_async
    def _tab_ids(self) -> set[str]:
        return {tab.conversation_id for tab in services.tab_list(user=self.user)}

    async def _resync(self, client_seq: int | None, *, full: bool) -> None:
        """History (when the client's differs), then the running turn's replay, then live."""
        turns, seq, _running = await database_sync_to_async(views.history_snapshot)(
            conversation_id=self.conversation_id
        )
        parts = []
        if client_seq != seq:
            history = "".join(render_to_string("chat/_turn.html", {"turn": t}) for t in turns)
            parts.append(f'<div id="history" hx-swap-oob="innerHTML">{history}</div>')
            parts.append(render_to_string("chat/_history_seq.html", {"seq": seq, "oob": True}))
        self.history_seq = seq
        parts.append('<div id="live" hx-swap-oob="innerHTML"></div>')
        if full:  # a reconnect: anything may have changed while the socket was down
            parts += [await self._tabs_html(), await self._queue_html(), await self._status_html()]
        await self.send(text_data="".join(parts))
        self.live = None
        self.feed.forget()
        await self.feed.replay(reply_to=self.channel_name)
        if not self.feed.pending:
            await self._flush()

    # ------------------------------------------------------------------ group messages

    async def _owns_conversation(self) -> bool:
        if self.owned is None:
            try:
                conversation = await database_sync_to_async(conversation_for_user)(
                    user=self.user, conversation_id=self.conversation_id
                )
            except NotFound:
                self.owned = False  # someone else's: no query per event of their turn
            else:
                self.owned = True if conversation is not None else None
        return bool(self.owned)

    async def chat_replay(self, message: dict) -> None:
        if message["conversation"] == self.conversation_id and await self._owns_conversation():
            await self.feed.on_replay(message)
            await self._flush()  # the whole replay is rendered once

    async def chat_event(self, message: dict) -> None:
        if (
            message["event"]["conversationId"] == self.conversation_id
            and await self._owns_conversation()
        ):
            await self.feed.on_event(message)
        # else: another tab's conversation; only its status matters here

    async def chat_status(self, message: dict) -> None:
        parts = [await self._tabs_html()]
        if message["conversation"] == self.conversation_id and await self._owns_conversation():
            # A turn starting or ending may have drained the queue; nothing else says so.
            parts += [await self._status_html(), await self._queue_html()]
        await self.send(text_data="".join(parts))

    async def chat_queue(self, message: dict) -> None:
        if message["conversation"] == self.conversation_id and await self._owns_conversation():
            html = render_to_string("chat/_queue.html", {"queue": message["queue"], "oob": True})
            await self.send(text_data=html)

    async def ui_tabs(self, message: dict) -> None:
        await self._watch(await self._tab_ids())
        await self.send(text_data=await self._tabs_html())

    # ------------------------------------------------------------------ the running turn

    async def _on_event(self, message: dict) -> None:
        replay = self.feed.pending  # a replay is rendered once, by the flush that follows it
        turn_id, event = message["turn"], message["event"]
        if event["type"] == "turn-sealed":
            if self.live is None or self.live.turn_id == turn_id:
                await self._seal(turn_id)
            return
        live = self.live
        if live is None or live.turn_id != turn_id:
            await self._flush()
            number = await database_sync_to_async(views.turn_number)(
                conversation_id=self.conversation_id
            )
            live = self.live = LiveTurn(turn_id, number)
        live.apply(event)
        if replay:
            return
        if event["type"] in DELTAS:
            self._schedule_flush()
        else:
            await self._flush()
            if event["type"] == "steering":  # the queue was drained into the turn
                await self.send(text_data=await self._queue_html())
            if event["type"] == "done":
                await self.send(text_data=await self._gauge_html(live.context_size))

    def _schedule_flush(self) -> None:
        if self._flush_handle is not None:
            return
        wait = max(0.0, self._last_flush + FLUSH_INTERVAL - time.monotonic())
        self._flush_handle = asyncio.get_running_loop().call_later(
            wait, lambda: asyncio.ensure_future(self._flush())
        )

    async def _flush(self) -> None:
        """Push what changed in the running turn since the last flush."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._last_flush = time.monotonic()
        live = self.live
        if live is None:
            return
        new, appended, dirty, foot = live.take_changes()
        turn = live.view
        if new:
            html = _oob_append("live", render_to_string("chat/_turn.html", {"turn": turn}))
        else:
            parts = []
            if appended:
                blocks = "".join(
                    render_to_string("chat/_block.html", {"block": b, "turn": turn})
                    for b in appended
                )
                parts.append(_oob_append(f"{turn.dom}-blocks", blocks))
            parts += [
                render_to_string("chat/_block.html", {"block": b, "turn": turn, "oob": True})
                for b in dirty
            ]
            if foot:
                parts.append(render_to_string("chat/_turn_foot.html", {"turn": turn, "oob": True}))
            html = "".join(parts)
        if html:
            await self.send(text_data=html)

    async def _seal(self, turn_id: str) -> None:
        """Move the turn from the live area into the history, rendered from the database."""
        await self._flush()
        self.live = None
        turn, seq = await database_sync_to_async(views.sealed_turn)(
            conversation_id=self.conversation_id, turn_id=turn_id
        )
        parts = ['<div id="live" hx-swap-oob="innerHTML"></div>']
        if turn is not None and seq > self.history_seq:
            parts.append(
                _oob_append("history", render_to_string("chat/_turn.html", {"turn": turn}))
            )
            self.history_seq = seq
            parts.append(render_to_string("chat/_history_seq.html", {"seq": seq, "oob": True}))
        parts.append(await self._gauge_html(None))
        await self.send(text_data="".join(parts))

    # ------------------------------------------------------------------ page parts

    async def _tabs_html(self) -> str:
        context = await database_sync_to_async(views.tabs_context)(
            user=self.user, current=self.conversation_id
        )
        return render_to_string("chat/_tabs.html", {**context, "oob": True})

    async def _queue_html(self) -> str:
        queue = await database_sync_to_async(queue_list)(conversation_id=self.conversation_id)
        return render_to_string("chat/_queue.html", {"queue": queue, "oob": True})

    async def _status_html(self) -> str:
        status = await database_sync_to_async(views.status_of)(conversation_id=self.conversation_id)
        return render_to_string("chat/_status.html", {"status": status, "oob": True})

    async def _gauge_html(self, context_size: int | None) -> str:
        from chat.providers import get_catalog

        conversation = await self._conversation()
        if context_size is None:
            context_size = await database_sync_to_async(views.last_context_size)(
                conversation_id=self.conversation_id
            )
        models = await get_catalog().models()
        model = (conversation.model if conversation else "") or get_catalog().default_model
        context = views.gauge_context(models=models, model=model, context_size=context_size)
        return render_to_string("chat/_gauge.html", {**context, "oob": True})

    async def _conversation(self):
        return await database_sync_to_async(conversation_for_user)(
            user=self.user, conversation_id=self.conversation_id
        )

    async def _notice(self, message: str = "") -> None:
        await self.send(text_data=render_to_string("chat/_notice.html", {"message": message}))

    # ------------------------------------------------------------------ frames in

    async def receive(self, text_data=None, bytes_data=None):
        try:
            frame = json.loads(text_data or "")
        except ValueError:
            await self._notice("malformed frame")
            return
        action = frame.get("action") if isinstance(frame, dict) else None
        handler = self.ACTIONS.get(action) if isinstance(action, str) else None
        if handler is None:
            await self._notice("unknown action")
            return
        try:
            await handler(self, frame)
        except NotFound:
            await self._notice("conversation not found")
        except (services.Conflict, services.InvalidInput) as exc:
            await self._notice(str(exc))
        except Exception:
            log.exception("ui action %s failed", action)
            await self._notice("internal error")

    async def act_send(self, frame: dict) -> None:
        """Send when idle, queue (steer) when a turn runs, stop when it runs and text is empty."""
        text = _text(frame, "message")
        running = self.conversation_id in registry.turns or (
            await database_sync_to_async(services.running_turn_row)(
                conversation_id=self.conversation_id
            )
            is not None
        )
        await self._notice()
        if not text.strip():
            if running:
                await services.turn_stop(user=self.user, conversation_id=self.conversation_id)
            return
        if running:
            await self._enqueue(text)
            return
        request = services.TurnRequest(
            message=text,
            conversation_id=self.conversation_id,
            model=_text(frame, "model") or None,
            reasoning_effort=_effort(frame),
        )
        try:
            await services.turn_start(user=self.user, request=request)
        except services.Conflict:
            await self._enqueue(text)
            return
        self.owned = True
        # The turn runs here: take its first events from the registry (see ChatConsumer).
        await self.feed.replay(reply_to=self.channel_name)
        await self._flush()
        await database_sync_to_async(services.tab_open)(
            user=self.user, conversation_id=self.conversation_id
        )

    async def _enqueue(self, text: str) -> None:
        await services.queue_enqueue(
            user=self.user, conversation_id=self.conversation_id, text=text
        )

    async def act_stop(self, frame: dict) -> None:
        await services.turn_stop(user=self.user, conversation_id=self.conversation_id)

    async def act_cancel(self, frame: dict) -> None:
        await services.queue_remove(
            user=self.user, conversation_id=self.conversation_id, message_id=_text(frame, "id")
        )

    async def act_credential(self, frame: dict) -> None:
        """Show the credential's models; the first becomes the conversation's model."""
        from chat.providers import get_catalog

        models = await get_catalog().models()
        context = views.model_context(
            models=models, selected="", credential=_text(frame, "credential")
        )
        if context["model"]:
            await self._set_conversation(model=context["model"])
        await self.send(
            text_data=render_to_string("chat/_model_select.html", {**context, "oob": True})
        )

    async def act_model(self, frame: dict) -> None:
        from chat.providers import get_catalog

        model = _text(frame, "model")
        if model not in await get_catalog().models():
            raise services.InvalidInput(f"unknown model {model!r}")
        await self._set_conversation(model=model)

    async def act_effort(self, frame: dict) -> None:
        effort = _effort(frame)
        if effort is None:
            raise services.InvalidInput("unknown reasoning effort")
        await self._set_conversation(reasoning_effort=effort)

    async def _set_conversation(self, **fields) -> None:
        """Sticky per conversation; a draft keeps the choice in its form until the first send."""
        conversation = await self._conversation()
        if conversation is not None:
            await database_sync_to_async(services.conversation_update)(
                conversation=conversation, **fields
            )

    async def act_rename(self, frame: dict) -> None:
        title = " ".join(_text(frame, "title").split())[:TITLE_MAX]
        if not title:
            raise services.InvalidInput("a title cannot be empty")
        await database_sync_to_async(services.tab_rename)(
            user=self.user, conversation_id=_text(frame, "conversation"), title=title
        )

    async def act_close(self, frame: dict) -> None:
        """Close the tab's conversation (stops its turn); it stays in the conversation list."""
        conversation_id = _text(frame, "conversation")
        await services.conversation_close(user=self.user, conversation_id=conversation_id)
        await database_sync_to_async(services.tab_close)(
            user=self.user, conversation_id=conversation_id
        )
        if conversation_id == self.conversation_id:
            await self.send(
                text_data='<div id="nav" data-href="/" hidden hx-swap-oob="true"></div>'
            )

    ACTIONS = {
        "send": act_send,
        "stop": act_stop,
        "cancel": act_cancel,
        "credential": act_credential,
        "model": act_model,
        "effort": act_effort,
        "rename": act_rename,
        "close": act_close,
    }


def _text(frame: dict, name: str) -> str:
    value = frame.get(name, "")
    return value if isinstance(value, str) else ""


def _effort(frame: dict) -> str | None:
    effort = _text(frame, "reasoningEffort")
    return effort if effort in REASONING_EFFORTS else None

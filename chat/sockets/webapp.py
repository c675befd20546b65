"""The web app's socket (htmx ws extension): form frames in, HTML fragments out
(docs/protocol.md#8-web-app-socket).

One socket per page, showing one conversation. On connect it joins the conversation's group,
reads the committed history, then follows the running turn through a chat.feeds.TurnFeed
(replay, then live, no gap and no duplicate), like chat.sockets.api.ApiSocket. The running turn
is folded into a LiveTurn and only what changed is pushed, as ``hx-swap-oob`` fragments.
Deltas (the hottest path) never render Markdown directly: they mark the step dirty and a flush
at most every FLUSH_INTERVAL seconds re-renders it; every other event flushes at once. At
``turn-sealed`` the turn is replaced by its rendering from the database, the same a reload
shows.

The socket also joins the groups of the user's other tabs, for their spinners (status), and
hears the user's group: tabs, the sidebar's conversation list (re-fetched by the page with its
search, when ``#conversations-stamp`` changes) and the theme follow every change live.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from django.template.loader import render_to_string
from django.utils.html import escape

from chat import pages, selectors, services
from chat.errors import Conflict, NotFound
from chat.feeds import TurnFeed
from chat.models import CONVERSATION_ID_PATTERN, group_name_for
from chat.providers import get_catalog
from chat.sockets.base import GOING_AWAY, BaseSocket
from chat.transcript import DELTAS, LiveTurn

FLUSH_INTERVAL = 0.1  # seconds: the most often a streaming step is re-rendered
NOT_FOUND = 4404
_stamps = itertools.count(1)


def _oob_append(target: str, inner: str) -> str:
    return f'<div hx-swap-oob="beforeend:#{target}">{inner}</div>'


class WebAppSocket(BaseSocket):
    op_key = "action"
    kind = "webapp"

    async def opened(self) -> None:
        query = parse_qs(self.scope.get("query_string", b"").decode())
        conversation_id = (query.get("conversation") or [""])[0]
        if not re.fullmatch(CONVERSATION_ID_PATTERN, conversation_id):
            await self.reject(NOT_FOUND)
            return
        # A draft's conversation does not exist yet: until it does and is seen to be this
        # user's, nothing about it is shown (someone else could create that id).
        if not await self.ownership.owns(conversation_id) and (
            conversation_id in self.ownership.foreign
        ):
            await self.reject(NOT_FOUND)
            return
        self.conversation_id = conversation_id
        self.live: LiveTurn | None = None
        self.feed = TurnFeed(conversation_id, self._on_event)
        self.history_seq = 0
        self.watched: set[str] = set()
        self._flush_handle: asyncio.TimerHandle | None = None
        self._last_flush = 0.0
        await self._watch(await self._tab_ids())
        seq = (query.get("seq") or [""])[0]
        await self._resync(int(seq) if seq.isdigit() else None, full="resync" in query)

    async def closed(self) -> None:
        if not hasattr(self, "watched"):
            return
        if self._flush_handle is not None:
            self._flush_handle.cancel()
        for conversation_id in self.watched:
            await self.channel_layer.group_discard(
                group_name_for(conversation_id), self.channel_name
            )

    async def refuse(self, message: str, frame: dict | None) -> None:
        await self._notice(message)

    async def draining(self) -> None:
        # The page reconnects on 4503 (static/chat/reconnect.js) and resyncs: through the
        # proxy, to another worker, now rather than when this one exits.
        await self.close(code=GOING_AWAY)

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
        return {tab.conversation_id for tab in selectors.tab_list(user=self.user)}

    async def _resync(self, client_seq: int | None, *, full: bool) -> None:
        """History (the newest window, when the client's seq differs), then the running turn's
        replay, then live. Never more than one window of history (docs/protocol.md#8)."""
        view = await database_sync_to_async(pages.transcript)(conversation_id=self.conversation_id)
        seq = view.seq
        parts = []
        if client_seq != seq:
            context = pages.history_context(conversation_id=self.conversation_id, view=view)
            history = render_to_string("chat/_history.html", context)
            parts.append(f'<div id="history" hx-swap-oob="innerHTML">{history}</div>')
            parts.append(render_to_string("chat/_history_seq.html", {"seq": seq, "oob": True}))
        self.history_seq = seq
        parts.append('<div id="live" hx-swap-oob="innerHTML"></div>')
        if full:  # a reconnect: anything may have changed while the socket was down
            parts += [await self._tabs_html(), await self._queue_html(), await self._status_html()]
            parts.append(self._stamp_html())
        await self.send(text_data="".join(parts))
        self.live = None
        self.feed.forget()
        await self.feed.replay(reply_to=self.channel_name)
        if not self.feed.pending:
            await self._flush()

    # ------------------------------------------------------------------ group messages

    async def _mine(self) -> bool:
        return await self.ownership.owns(self.conversation_id)

    async def chat_replay(self, message: dict) -> None:
        if message["conversation"] == self.conversation_id and await self._mine():
            await self.feed.on_replay(message)
            await self._flush()  # the whole replay is rendered once

    async def chat_event(self, message: dict) -> None:
        if message["event"]["conversationId"] == self.conversation_id and await self._mine():
            await self.feed.on_event(message)
        # else: another tab's conversation; only its status matters here

    async def chat_status(self, message: dict) -> None:
        parts = [await self._tabs_html(), self._stamp_html()]
        if message["conversation"] == self.conversation_id and await self._mine():
            # A turn starting or ending may have drained the queue; nothing else says so.
            parts += [await self._status_html(), await self._queue_html()]
        await self.send(text_data="".join(parts))

    async def chat_queue(self, message: dict) -> None:
        if message["conversation"] == self.conversation_id and await self._mine():
            html = render_to_string("chat/_queue.html", {"queue": message["queue"], "oob": True})
            await self.send(text_data=html)

    async def user_conversations(self, message: dict) -> None:
        """The user's tabs or conversations changed (another page, device or client)."""
        await self._watch(await self._tab_ids())
        parts = [await self._tabs_html(), self._stamp_html(), await self._manage_html()]
        await self.send(text_data="".join(parts))

    async def user_presets(self, message: dict) -> None:
        """The user's system prompt presets changed."""
        await self.send(text_data=await self._prompt_html())

    async def chat_prompt(self, message: dict) -> None:
        if message["conversation"] == self.conversation_id and await self._mine():
            await self.send(text_data=await self._prompt_html())

    async def chat_deleted(self, message: dict) -> None:
        """This page's conversation was deleted (here or elsewhere): leave it."""
        if message["conversation"] == self.conversation_id:
            await self._navigate("/")

    async def conversation_open(self, message: dict) -> None:
        """A conversation of the user was created: the sidebar lists it."""
        await self.send(text_data=self._stamp_html())

    async def user_preferences(self, message: dict) -> None:
        """The user chose another theme (on any page or device)."""
        theme = str(message.get("theme", ""))
        await self.send(
            text_data=render_to_string("chat/_theme_state.html", {"theme": theme, "oob": True})
        )

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
            number, fence = await database_sync_to_async(pages.live_turn_start)(
                conversation_id=self.conversation_id,
                turn_id=turn_id,
                continuation=bool(event.get("continuation")),
            )
            live = self.live = LiveTurn(turn_id, number, fence=fence)
        live.apply(event)
        if replay:
            return
        if event["type"] in DELTAS:
            self._schedule_flush()
        else:
            await self._flush()
            if event["type"] == "steering":  # the queue was drained into the turn
                await self.send(text_data=await self._queue_html())
            if event["type"] == "usage":  # the context as the model just read it
                usage = event["usage"]
                size = usage.get("inputTokens", 0) + usage.get("outputTokens", 0)
                await self.send(text_data=await self._gauge_html(size))
            if event["type"] == "done":
                await self.send(text_data=await self._gauge_html(live.context_size))
                if live.failure and live.view.kind == "compaction":  # a manual one
                    await self._notice(f"compaction failed: {live.failure}")

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
        turn, seq = await database_sync_to_async(pages.sealed_turn)(
            conversation_id=self.conversation_id, turn_id=turn_id
        )
        parts = ['<div id="live" hx-swap-oob="innerHTML"></div>']
        if turn is not None and seq > self.history_seq:  # a failed compaction wrote nothing
            parts.append(
                _oob_append("history", render_to_string("chat/_turn.html", {"turn": turn}))
            )
            self.history_seq = seq
            parts.append(render_to_string("chat/_history_seq.html", {"seq": seq, "oob": True}))
        parts.append(await self._gauge_html(None))
        if turn is not None:  # said once per answer, not per delta (aria-live)
            parts.append(
                render_to_string("chat/_announcer.html", {"text": turn.announcement(), "oob": True})
            )
        await self.send(text_data="".join(parts))

    # ------------------------------------------------------------------ page parts

    async def _tabs_html(self) -> str:
        context = await database_sync_to_async(pages.tabs_context)(
            user=self.user, current=self.conversation_id
        )
        return render_to_string("chat/_tabs.html", {**context, "oob": True})

    async def _queue_html(self) -> str:
        queue = await database_sync_to_async(selectors.queue_list)(
            conversation_id=self.conversation_id
        )
        return render_to_string("chat/_queue.html", {"queue": queue, "oob": True})

    async def _status_html(self) -> str:
        status = await database_sync_to_async(selectors.conversation_status)(
            conversation_id=self.conversation_id
        )
        return render_to_string("chat/_status.html", {"status": status, "oob": True})

    async def _gauge_html(self, context_size: int | None, model: str | None = None) -> str:
        """The context gauge: ``context_size`` (else the last known) against the window of
        ``model`` (else the conversation's)."""
        catalog = get_catalog()
        models = await catalog.models()
        if model is None:
            conversation = await database_sync_to_async(selectors.conversation_for_user)(
                user=self.user, conversation_id=self.conversation_id
            )
            model = (conversation.model if conversation else "") or catalog.default_model
        if context_size is None:
            context_size = await database_sync_to_async(selectors.last_context_size)(
                conversation_id=self.conversation_id
            )
        context = pages.gauge_context(models=models, model=model, context_size=context_size)
        return render_to_string("chat/_gauge.html", {**context, "oob": True})

    async def _manage_parts(self) -> dict:
        try:
            return await database_sync_to_async(pages.manage_context)(
                user=self.user, conversation_id=self.conversation_id
            )
        except NotFound:  # deleted meanwhile: chat_deleted takes the page away
            return {"exists": False, "presets": []}

    async def _manage_html(self) -> str:
        context = await self._manage_parts()
        return render_to_string("chat/_manage_bar.html", {**context, "oob": True})

    async def _prompt_html(self) -> str:
        context = await self._manage_parts()
        return render_to_string("chat/_system_prompt.html", {**context, "oob": True})

    async def _navigate(self, href: str, compose: str | None = None) -> None:
        """Send the page to ``href`` (with text for its composer, e.g. an edited message)."""
        data = f' data-compose="{escape(compose)}"' if compose is not None else ""
        await self.send(
            text_data=f'<div id="nav" data-href="{escape(href)}"{data} hidden hx-swap-oob="true"></div>'
        )

    def _stamp_html(self) -> str:
        """A new stamp: the page re-fetches its conversation list (keeping its search)."""
        return (
            f'<span id="conversations-stamp" data-stamp="{next(_stamps)}" hidden '
            'hx-swap-oob="true"></span>'
        )

    async def _controls_html(self, model: str) -> str:
        """The Effort control and the gauge for ``model`` (whether it reasons, its window)."""
        models = await get_catalog().models()
        conversation = await database_sync_to_async(selectors.conversation_for_user)(
            user=self.user, conversation_id=self.conversation_id
        )
        context = {
            **pages.model_context(models=models, selected=model),
            **pages.effort_context(conversation),
            "oob": True,
        }
        return render_to_string("chat/_effort.html", context) + await self._gauge_html(None, model)

    async def _notice(self, message: str = "") -> None:
        await self.send(text_data=render_to_string("chat/_notice.html", {"message": message}))

    # ------------------------------------------------------------------ frames in

    async def act_send(self, frame: dict) -> None:
        """Send when idle, queue (steer) when a turn runs, stop when the text is empty.

        Attachments (their ids, uploaded by the page) go with a new turn only: a queued text
        is text alone, so while a turn runs they are refused and stay in the composer.
        """
        text = frame.get("message", "")
        attachments = frame.get("attachments") or None
        await self._notice()
        if isinstance(text, str) and not text.strip() and not attachments:
            await services.turn_stop(user=self.user, conversation_id=self.conversation_id)
            return
        try:
            await services.turn_start(
                user=self.user,
                conversation_id=self.conversation_id,
                message=text,
                model=frame.get("model") or None,
                reasoning_effort=frame.get("reasoningEffort") or None,
                attachments=attachments,
            )
        except Conflict as exc:  # a turn runs: the text steers it
            if attachments:
                raise Conflict(f"{exc.message}: send the attachments when it ends") from None
            await services.queue_add(
                user=self.user, conversation_id=self.conversation_id, text=text
            )
            return
        if attachments:  # they went with the message: the composer lets them go
            await self.send(text_data=render_to_string("chat/_attachment_tray.html", {"oob": True}))
        self.ownership.claim(self.conversation_id)
        # The turn runs here: take its first events from this process (see ApiSocket.op_send).
        await self.feed.replay(reply_to=self.channel_name)
        await self._flush()
        await services.conversation_open(user=self.user, conversation_id=self.conversation_id)

    async def act_stop(self, frame: dict) -> None:
        await services.turn_stop(user=self.user, conversation_id=self.conversation_id)

    async def act_cancel(self, frame: dict) -> None:
        await services.queue_cancel(
            user=self.user, conversation_id=self.conversation_id, message_id=frame.get("id")
        )

    async def act_credential(self, frame: dict) -> None:
        """Show the credential's models; the first becomes the conversation's model."""
        models = await get_catalog().models()
        context = pages.model_context(
            models=models, selected="", credential=str(frame.get("credential", ""))
        )
        if context["model"]:
            await self._set_model(context["model"])
        await self.send(
            text_data=render_to_string("chat/_model_select.html", {**context, "oob": True})
            + await self._controls_html(context["model"])
        )

    async def act_model(self, frame: dict) -> None:
        model = frame.get("model")
        await self._set_model(model)
        await self.send(text_data=await self._controls_html(str(model)))

    async def _set_model(self, model) -> None:
        # A draft keeps the choice in its form until its first message; it is checked now.
        if await self._mine():
            await services.conversation_set_model(
                user=self.user, conversation_id=self.conversation_id, model=model
            )
        else:
            await services.resolve_model(model if isinstance(model, str) else "")

    async def act_effort(self, frame: dict) -> None:
        effort = frame.get("reasoningEffort")
        if await self._mine():
            await services.conversation_set_reasoning_effort(
                user=self.user, conversation_id=self.conversation_id, reasoning_effort=effort
            )

    async def act_retry(self, frame: dict) -> None:
        """Send a failed turn's prompt again (a new turn)."""
        await self._notice()
        await services.turn_retry(
            user=self.user, conversation_id=self.conversation_id, turn_id=frame.get("turn")
        )
        await self.feed.replay(reply_to=self.channel_name)
        await self._flush()

    async def act_theme(self, frame: dict) -> None:
        await services.preferences_set_theme(user=self.user, theme=frame.get("theme"))

    async def act_rename(self, frame: dict) -> None:
        await services.conversation_rename(
            user=self.user, conversation_id=frame.get("conversation"), title=frame.get("title")
        )

    async def act_close(self, frame: dict) -> None:
        """Close the tab's conversation (stops its turn); it stays in the conversation list."""
        conversation_id = frame.get("conversation")
        await services.conversation_close(user=self.user, conversation_id=conversation_id)
        if conversation_id == self.conversation_id:
            await self._navigate("/")

    async def act_reorder(self, frame: dict) -> None:
        await services.tabs_reorder(user=self.user, conversation_ids=frame.get("order"))

    async def act_compact(self, frame: dict) -> None:
        """Compact the conversation now; its progress streams like a turn."""
        await self._notice()
        await services.conversation_compact(user=self.user, conversation_id=self.conversation_id)
        await self.feed.replay(reply_to=self.channel_name)
        await self._flush()

    async def act_compaction(self, frame: dict) -> None:
        """Set the conversation's compaction threshold (%, 0: off)."""
        threshold = frame.get("threshold")
        if isinstance(threshold, str) and re.fullmatch(r"\s*[0-9]{1,9}\s*", threshold):
            threshold = int(threshold)  # a form's number field arrives as text
        await services.conversation_set_compaction(
            user=self.user, conversation_id=self.conversation_id, threshold=threshold
        )

    async def act_continue(self, frame: dict) -> None:
        """Continue the last answer (cut at the length limit) in a new turn."""
        await self._notice()
        await services.turn_continue(user=self.user, conversation_id=self.conversation_id)
        await self.feed.replay(reply_to=self.channel_name)
        await self._flush()

    # ------------------------------------------------------------------ managing conversations

    async def act_system_prompt(self, frame: dict) -> None:
        """Save the template for this conversation ("" keeps no prompt; ``default`` set: the
        deployment's)."""
        template = None if frame.get("default") else frame.get("template")
        await services.conversation_set_system_prompt(
            user=self.user, conversation_id=self.conversation_id, template=template
        )
        self.ownership.claim(self.conversation_id)
        await self._notice()
        await self.send(text_data=await self._prompt_html())

    async def act_preset_save(self, frame: dict) -> None:
        await services.preset_save(
            user=self.user, name=frame.get("presetName"), template=frame.get("template")
        )
        await self._notice()

    async def act_preset_delete(self, frame: dict) -> None:
        await services.preset_delete(user=self.user, name=frame.get("presetName"))

    async def act_edit(self, frame: dict) -> None:
        """Edit & resend: fork just before that user message; its text goes in the fork's
        composer."""
        seq = frame.get("seq")
        fork = await services.conversation_fork(
            user=self.user, conversation_id=self.conversation_id, before_seq=seq
        )
        text = await database_sync_to_async(selectors.user_message_text)(
            conversation_id=self.conversation_id, seq=seq
        )
        await self._navigate(f"/c/{fork.id}", compose=text)

    async def act_regenerate(self, frame: dict) -> None:
        """Regenerate: fork before the turn's user message and run it again there."""
        fork = await services.conversation_regenerate(
            user=self.user, conversation_id=self.conversation_id, seq=frame.get("seq")
        )
        await self._navigate(f"/c/{fork.id}")

    async def act_archive(self, frame: dict) -> None:
        await services.conversation_archive(
            user=self.user, conversation_id=frame.get("conversation")
        )

    async def act_restore(self, frame: dict) -> None:
        await services.conversation_restore(
            user=self.user, conversation_id=frame.get("conversation")
        )

    async def act_delete(self, frame: dict) -> None:
        """Delete for good (the page asked for a confirmation first)."""
        await services.conversation_delete(
            user=self.user, conversation_id=frame.get("conversation")
        )

    OPS = {
        "system_prompt": act_system_prompt,
        "preset_save": act_preset_save,
        "preset_delete": act_preset_delete,
        "edit": act_edit,
        "regenerate": act_regenerate,
        "archive": act_archive,
        "restore": act_restore,
        "delete": act_delete,
        "send": act_send,
        "stop": act_stop,
        "cancel": act_cancel,
        "credential": act_credential,
        "model": act_model,
        "effort": act_effort,
        "retry": act_retry,
        "theme": act_theme,
        "rename": act_rename,
        "close": act_close,
        "reorder": act_reorder,
        "compact": act_compact,
        "compaction": act_compaction,
        "continue": act_continue,
    }

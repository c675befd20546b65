"""One path per intent: every transport that offers an intent gets the same result from it.

For each user intent and each transport offering it — the JSON API, the JSON WebSocket, the web
app's socket, the admin and the web views — the same request must store the same result and
announce the same events (captured on the channel layer), and the same bad input must be refused
with the same message: too long, of the wrong type, someone else's conversation, rate limited.
A transport only maps a service's answer to its protocol, so a difference here is drift.
"""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass

import pytest
from asgiref.sync import ThreadSensitiveContext, sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import AsyncClient, Client
from django.urls import reverse
from django.utils import timezone

from chat.models import (
    Attachment,
    Conversation,
    QueuedMessage,
    SystemPromptPreset,
    Tab,
    UserSettings,
)
from chat.ratelimit import turn_rate_check
from chat.runtime import Message, TurnMetrics
from chat.services import _log, attachment_upload
from chat.services.compaction import TOO_SHORT
from chat.services.events import conversation_group, user_group
from tests.chat.images import png_bytes
from tests.security.conftest import MODEL, api_client, application, script_answers

pytestmark = pytest.mark.django_db(transaction=True)

CONVERSATION = "intent-conv"
THEIRS = "bob-conv"
PRESET = "Brief"
NOT_FOUND = f"conversation not found: {THEIRS}"
QUIET = 0.3  # seconds without a message that end a capture (after the probe has answered)


# ---------------------------------------------------------------- transports


@dataclass
class Ctx:
    user: object
    token: str
    admin: Client


class Transport:
    """How one transport asks for intents; each returns the refusal message or None."""

    name = ""
    intents: dict[str, str] = {}

    async def run(self, ctx: Ctx, intent: str, conversation_id: str, value) -> str | None:
        return await getattr(self, self.intents[intent])(ctx, conversation_id, value)


class Api(Transport):
    name = "api"
    intents = {
        "send": "send",
        "queue": "queue",
        "queue-cancel": "queue_cancel",
        "stop": "stop",
        "close": "close",
        "open": "open",
        "rename": "rename",
        "model": "model",
        "effort": "effort",
        "cwd": "cwd",
        "tabs": "tabs",
        "compact": "compact",
        "compaction": "compaction",
        "continue": "continue_",
        "send-attachments": "send_attachments",
        "attach": "attach",
        "detach": "detach",
        "system-prompt": "system_prompt",
        "preset-save": "preset_save",
        "preset-delete": "preset_delete",
        "fork": "fork",
        "archive": "archive",
        "restore": "restore",
        "delete": "delete",
        "import": "import_",
        "theme": "theme",
    }

    async def system_prompt(self, ctx, conversation_id, value):
        path = f"/conversations/{conversation_id}/system-prompt"
        return await self._call(ctx, "put", path, {"template": value})

    async def preset_save(self, ctx, conversation_id, value):
        path = f"/system-prompt-presets/{PRESET}"
        return await self._call(ctx, "put", path, {"template": value})

    async def preset_delete(self, ctx, conversation_id, value):
        return await self._call(ctx, "delete", f"/system-prompt-presets/{PRESET}")

    async def fork(self, ctx, conversation_id, value):
        body = {} if value is None else {"beforeSeq": value}
        return await self._call(ctx, "post", f"/conversations/{conversation_id}/fork", body)

    async def archive(self, ctx, conversation_id, value):
        return await self._call(ctx, "post", f"/conversations/{conversation_id}/archive")

    async def restore(self, ctx, conversation_id, value):
        return await self._call(ctx, "post", f"/conversations/{conversation_id}/restore")

    async def delete(self, ctx, conversation_id, value):
        return await self._call(ctx, "delete", f"/conversations/{conversation_id}")

    async def import_(self, ctx, conversation_id, value):
        return await self._call(ctx, "post", "/conversations", value)

    async def _call(self, ctx, method, path, body=None):
        client = api_client(ctx.token)
        send = getattr(client, method)
        # A request of its own thread-sensitive context, as Django's ASGI handler gives every
        # request (the test client does not): a route that waits for a turn (compact) must
        # not hold the thread the turn's database writes need.
        async with ThreadSensitiveContext():
            if isinstance(body, bytes):  # an upload
                response = await send(path, {"file": SimpleUploadedFile("notes.txt", body)})
            else:
                if isinstance(body, dict):
                    body = json.dumps(body)
                response = await (
                    send(path)
                    if body is None
                    else send(path, body, content_type="application/json")
                )
        if response.status_code >= 400:
            return response.json()["error"]
        if response.get("Content-Type", "").startswith("application/x-ndjson"):
            async for _ in response.streaming_content:
                pass  # the turn runs to its end
        return None

    async def send(self, ctx, conversation_id, value):
        body = {"conversationId": conversation_id, "message": value}
        return await self._call(ctx, "post", "/chat", body)

    async def queue(self, ctx, conversation_id, value):
        return await self._call(
            ctx, "post", f"/conversations/{conversation_id}/queue", {"text": value}
        )

    async def queue_cancel(self, ctx, conversation_id, value):
        return await self._call(ctx, "delete", f"/conversations/{conversation_id}/queue/{value}")

    async def stop(self, ctx, conversation_id, value):
        return await self._call(ctx, "post", f"/conversations/{conversation_id}/stop")

    async def close(self, ctx, conversation_id, value):
        return await self._call(ctx, "post", f"/conversations/{conversation_id}/close")

    async def open(self, ctx, conversation_id, value):
        return await self._call(ctx, "post", f"/conversations/{conversation_id}/open")

    async def rename(self, ctx, conversation_id, value):
        return await self._call(
            ctx, "put", f"/conversations/{conversation_id}/title", {"title": value}
        )

    async def model(self, ctx, conversation_id, value):
        return await self._call(
            ctx, "put", f"/conversations/{conversation_id}/model", {"model": value}
        )

    async def effort(self, ctx, conversation_id, value):
        body = {"reasoningEffort": value}
        return await self._call(
            ctx, "put", f"/conversations/{conversation_id}/reasoning-effort", body
        )

    async def cwd(self, ctx, conversation_id, value):
        return await self._call(ctx, "put", f"/conversations/{conversation_id}/cwd", {"cwd": value})

    async def tabs(self, ctx, conversation_id, value):
        return await self._call(ctx, "put", "/tabs", {"conversationIds": value})

    async def compact(self, ctx, conversation_id, value):
        return await self._call(ctx, "post", f"/conversations/{conversation_id}/compact")

    async def compaction(self, ctx, conversation_id, value):
        body = {"threshold": value}
        return await self._call(ctx, "put", f"/conversations/{conversation_id}/compaction", body)

    async def continue_(self, ctx, conversation_id, value):
        return await self._call(ctx, "post", f"/conversations/{conversation_id}/continue")

    async def send_attachments(self, ctx, conversation_id, value):
        body = {"conversationId": conversation_id, "message": "look", "attachments": value}
        return await self._call(ctx, "post", "/chat", body)

    async def attach(self, ctx, conversation_id, value):
        return await self._call(ctx, "post", "/attachments", value)

    async def detach(self, ctx, conversation_id, value):
        return await self._call(ctx, "delete", f"/attachments/{value}")

    async def theme(self, ctx, conversation_id, value):
        return await self._call(ctx, "put", "/preferences", {"theme": value})


class ApiSocket(Transport):
    """The JSON protocol. A probe frame after each op: its answer marks the op's end."""

    name = "json-socket"
    intents = {
        "send": "send",
        "queue": "queue",
        "queue-cancel": "queue_cancel",
        "compact": "compact",
        "send-attachments": "send_attachments",
    }

    async def _op(self, ctx, frame, *, until_sealed=False):
        socket = WebsocketCommunicator(await application(), f"/ws?token={ctx.token}")
        assert (await socket.connect(timeout=10))[0]
        assert (await socket.receive_json_from(timeout=10))["type"] == "catalog"
        await socket.send_json_to(frame)
        await socket.send_json_to({"type": "probe"})
        refusal = None
        while True:
            reply = await socket.receive_json_from(timeout=10)
            if reply["type"] == "chat.error" and reply["message"] == "unknown type: probe":
                break
            if reply["type"] in ("chat.error", "error"):
                refusal = reply["message"]
        if until_sealed and refusal is None:
            while True:
                reply = await socket.receive_json_from(timeout=10)
                if reply.get("event", {}).get("type") == "turn-sealed":
                    break
        await socket.disconnect()
        return refusal

    async def send(self, ctx, conversation_id, value):
        frame = {"type": "chat.send", "conversationId": conversation_id, "message": value}
        return await self._op(ctx, frame, until_sealed=True)

    async def queue(self, ctx, conversation_id, value):
        return await self._op(
            ctx, {"type": "chat.queue", "conversationId": conversation_id, "text": value}
        )

    async def compact(self, ctx, conversation_id, value):
        frame = {"type": "chat.compact", "conversationId": conversation_id}
        return await self._op(ctx, frame, until_sealed=True)

    async def send_attachments(self, ctx, conversation_id, value):
        frame = {
            "type": "chat.send",
            "conversationId": conversation_id,
            "message": "look",
            "attachments": value,
        }
        return await self._op(ctx, frame, until_sealed=True)

    async def queue_cancel(self, ctx, conversation_id, value):
        frame = {"type": "chat.queue.cancel", "conversationId": conversation_id, "messageId": value}
        return await self._op(ctx, frame)


class Surface(ApiSocket):
    name = "surface"
    intents = {"queue-cancel": "queue_cancel"}

    async def queue_cancel(self, ctx, conversation_id, value):
        frame = {
            "type": "invoke",
            "surfaceId": "message-queue",
            "actionId": f"cancel:{value}",
            "conversationId": conversation_id,
        }
        return await self._op(ctx, frame)


class WebApp(Transport):
    """The web app's socket: refusals come back as the notice; a probe marks the end."""

    name = "webapp"
    intents = {
        "send": "send",
        "queue-cancel": "cancel",
        "stop": "stop",
        "close": "close",
        "rename": "rename",
        "model": "model",
        "effort": "effort",
        "tabs": "reorder",
        "compact": "compact",
        "compaction": "compaction",
        "continue": "continue_",
        "send-attachments": "send_attachments",
        "system-prompt": "system_prompt",
        "preset-save": "preset_save",
        "preset-delete": "preset_delete",
        "fork": "edit",
        "archive": "archive",
        "restore": "restore",
        "delete": "delete",
        "theme": "theme",
        "retry": "retry",
    }

    async def system_prompt(self, ctx, conversation_id, value):
        frame = {"action": "system_prompt", "template": value}
        return await self._act(ctx, conversation_id, frame)

    async def preset_save(self, ctx, conversation_id, value):
        frame = {"action": "preset_save", "presetName": PRESET, "template": value}
        return await self._act(ctx, CONVERSATION, frame)

    async def preset_delete(self, ctx, conversation_id, value):
        frame = {"action": "preset_delete", "presetName": PRESET}
        return await self._act(ctx, CONVERSATION, frame)

    async def edit(self, ctx, conversation_id, value):
        return await self._act(ctx, conversation_id, {"action": "edit", "seq": value})

    async def archive(self, ctx, conversation_id, value):
        frame = {"action": "archive", "conversation": conversation_id}
        return await self._act(ctx, conversation_id, frame, page=CONVERSATION)

    async def restore(self, ctx, conversation_id, value):
        frame = {"action": "restore", "conversation": conversation_id}
        return await self._act(ctx, conversation_id, frame, page=CONVERSATION)

    async def delete(self, ctx, conversation_id, value):
        frame = {"action": "delete", "conversation": conversation_id}
        return await self._act(ctx, conversation_id, frame, page=CONVERSATION)

    async def _act(self, ctx, conversation_id, frame, *, until_sealed=False, page=None):
        """``frame`` sent from the page of ``page`` (default: the conversation acted on)."""
        page = page or conversation_id
        path = f"/ws/ui?conversation={page}&token={ctx.token}"
        socket = WebsocketCommunicator(await application(), path)
        assert (await socket.connect(timeout=10))[0]
        await socket.send_to(text_data=_json(frame))
        await socket.send_to(text_data=_json({"action": "probe"}))
        refusal = None
        while True:
            output = await socket.receive_output(timeout=10)
            if output["type"] == "websocket.close":
                assert output["code"] == 4404  # someone else's conversation: no page socket
                return f"conversation not found: {page}"
            html = output["text"]
            notice = re.search(r'id="notice"[^>]*>(?:<div class="alert">(.*?)</div>)?</div>', html)
            if notice and notice[1] == "unknown action: probe":
                break
            if notice and notice[1]:
                refusal = _unescape(notice[1])
        if until_sealed and refusal is None:
            while 'hx-swap-oob="beforeend:#history"' not in await socket.receive_from(timeout=10):
                pass
        await socket.disconnect()
        return refusal

    async def send(self, ctx, conversation_id, value):
        return await self._act(
            ctx, conversation_id, {"action": "send", "message": value}, until_sealed=True
        )

    async def send_attachments(self, ctx, conversation_id, value):
        frame = {"action": "send", "message": "look", "attachments": value}
        return await self._act(ctx, conversation_id, frame, until_sealed=True)

    async def cancel(self, ctx, conversation_id, value):
        return await self._act(ctx, conversation_id, {"action": "cancel", "id": value})

    async def stop(self, ctx, conversation_id, value):
        return await self._act(ctx, conversation_id, {"action": "stop"})

    async def close(self, ctx, conversation_id, value):
        frame = {"action": "close", "conversation": conversation_id}
        return await self._act(ctx, conversation_id, frame, page=CONVERSATION)

    async def rename(self, ctx, conversation_id, value):
        frame = {"action": "rename", "conversation": conversation_id, "title": value}
        return await self._act(ctx, conversation_id, frame, page=CONVERSATION)

    async def model(self, ctx, conversation_id, value):
        return await self._act(ctx, conversation_id, {"action": "model", "model": value})

    async def effort(self, ctx, conversation_id, value):
        return await self._act(ctx, conversation_id, {"action": "effort", "reasoningEffort": value})

    async def reorder(self, ctx, conversation_id, value):
        return await self._act(ctx, conversation_id, {"action": "reorder", "order": value})

    async def compact(self, ctx, conversation_id, value):
        return await self._act(ctx, conversation_id, {"action": "compact"}, until_sealed=True)

    async def compaction(self, ctx, conversation_id, value):
        # A form's number field arrives as text.
        threshold = str(value) if isinstance(value, int) else value
        frame = {"action": "compaction", "threshold": threshold}
        return await self._act(ctx, conversation_id, frame)

    async def continue_(self, ctx, conversation_id, value):
        return await self._act(ctx, conversation_id, {"action": "continue"}, until_sealed=True)

    async def theme(self, ctx, conversation_id, value):
        return await self._act(ctx, conversation_id, {"action": "theme", "theme": value})

    async def retry(self, ctx, conversation_id, value):
        frame = {"action": "retry", "turn": value}
        return await self._act(ctx, conversation_id, frame, until_sealed=True)


class Admin(Transport):
    """The Django admin, as an operator: the change form and the list actions."""

    name = "admin"
    intents = {
        "queue-cancel": "queue_cancel",
        "close": "close",
        "rename": "rename",
        "model": "model",
        "effort": "effort",
        "cwd": "cwd",
        "archive": "archive",
        "restore": "restore",
        "delete": "delete",
    }
    FIELDS = ("title", "model", "reasoning_effort", "cwd")

    async def archive(self, ctx, conversation_id, value):
        changelist = "admin:chat_conversation_changelist"
        return await self._action(ctx, changelist, "archive", [conversation_id])

    async def restore(self, ctx, conversation_id, value):
        changelist = "admin:chat_conversation_changelist"
        return await self._action(ctx, changelist, "restore", [conversation_id])

    async def delete(self, ctx, conversation_id, value):
        changelist = "admin:chat_conversation_changelist"
        return await self._action(ctx, changelist, "delete_for_good", [conversation_id])

    async def _edit(self, ctx, conversation_id, field, value):
        @sync_to_async
        def post():
            current = Conversation.objects.filter(pk=conversation_id).values(*self.FIELDS).first()
            if current is None:
                return "conversation not found: " + conversation_id  # the admin has no such row
            url = reverse("admin:chat_conversation_change", args=[conversation_id])
            response = ctx.admin.post(url, {**current, field: value}, follow=True)
            return _admin_error(response)

        return await post()

    async def _action(self, ctx, changelist, action, pks):
        @sync_to_async
        def post():
            response = ctx.admin.post(
                reverse(changelist), {"action": action, "_selected_action": pks}, follow=True
            )
            return _admin_error(response)

        return await post()

    async def queue_cancel(self, ctx, conversation_id, value):
        return await self._action(ctx, "admin:chat_queuedmessage_changelist", "cancel", [value])

    async def close(self, ctx, conversation_id, value):
        return await self._action(
            ctx, "admin:chat_conversation_changelist", "close", [conversation_id]
        )

    async def rename(self, ctx, conversation_id, value):
        return await self._edit(ctx, conversation_id, "title", value)

    async def model(self, ctx, conversation_id, value):
        return await self._edit(ctx, conversation_id, "model", value)

    async def effort(self, ctx, conversation_id, value):
        return await self._edit(ctx, conversation_id, "reasoning_effort", value)

    async def cwd(self, ctx, conversation_id, value):
        return await self._edit(ctx, conversation_id, "cwd", value)


class View(Transport):
    """The web views: opening a conversation's page opens it (as a tab)."""

    name = "view"
    intents = {"open": "open"}

    async def open(self, ctx, conversation_id, value):
        client = AsyncClient()
        await client.aforce_login(ctx.user)
        response = await client.get(f"/c/{conversation_id}")
        if response.status_code == 404:
            return f"conversation not found: {conversation_id}"
        assert response.status_code == 200
        return None


TRANSPORTS = [Api(), ApiSocket(), Surface(), WebApp(), Admin(), View()]


def offering(intent: str) -> list[Transport]:
    return [t for t in TRANSPORTS if intent in t.intents]


def _json(frame: dict) -> str:
    import json

    return json.dumps(frame)


def _unescape(html: str) -> str:
    import html as html_module

    return html_module.unescape(html)


def _admin_error(response) -> str | None:
    errors = [str(m) for m in response.context["messages"] if m.level_tag == "error"]
    return errors[0].partition(": ")[2] if errors else None


# ---------------------------------------------------------------- capture and state


class Capture:
    """The channel-layer messages sent to the user's and a conversation's groups."""

    def __init__(self, user_id: int, conversation_id: str) -> None:
        self.groups = (user_group(user_id), conversation_group(conversation_id))

    async def __aenter__(self):
        layer = get_channel_layer()
        self.channel = await layer.new_channel("capture.")
        for group in self.groups:
            await layer.group_add(group, self.channel)
        return self

    async def __aexit__(self, *exc):
        for group in self.groups:
            await get_channel_layer().group_discard(group, self.channel)

    async def messages(self) -> list[tuple]:
        """What arrived, normalized (turn ids and times left out), until it goes quiet."""
        seen = []
        while True:
            try:
                message = await asyncio.wait_for(get_channel_layer().receive(self.channel), QUIET)
            except TimeoutError:
                return seen
            seen.append(_normal(message))


def _collapsed(messages: list[tuple]) -> list[tuple]:
    """Consecutive deltas as one: how a stream is cut into deltas depends on timing."""
    out: list[tuple] = []
    for message in messages:
        if not (out and message == out[-1] and message[1:2] and message[1] in DELTA_EVENTS):
            out.append(message)
    return out


DELTA_EVENTS = {"text-delta", "reasoning-delta"}


def _normal(message: dict) -> tuple:
    kind = message["type"]
    if kind == "chat.event":
        return kind, message["event"]["type"]
    if kind == "chat.status":
        return kind, message["status"]
    if kind == "chat.queue":
        return kind, tuple(item["text"] for item in message["queue"])
    if kind == "conversation.open":
        return kind, message["conversation"]
    if kind in ("chat.deleted", "chat.prompt"):
        return kind, message["conversation"]
    return (kind,)


@database_sync_to_async
def state(user, conversation_id: str) -> dict:
    conversation = Conversation.objects.filter(pk=conversation_id).first()
    return {
        "conversation": None
        if conversation is None
        else {
            "title": conversation.title,
            "status": conversation.status,
            "model": conversation.model,
            "effort": conversation.reasoning_effort,
            "cwd": conversation.cwd,
        },
        "log": [
            # A compaction names its step, whose turn id differs from run to run; each
            # transport's run sends an attachment of its own: its id differs.
            (
                role,
                {k: v for k, v in payload.items() if k != "stepId"}
                | ({"attachmentId": "ATT"} if "attachmentId" in payload else {}),
            )
            for role, payload in (
                conversation.chunks.order_by("seq").values_list("role", "payload")
                if conversation
                else []
            )
        ],
        "threshold": conversation.compact_threshold if conversation else None,
        "attachments": list(
            Attachment.objects.filter(owner=user)
            .order_by("created_at")
            .values_list("name", "kind", "conversation_id")
        ),
        "queue": list(
            QueuedMessage.objects.filter(conversation_id=conversation_id).values_list(
                "text", flat=True
            )
        ),
        "tabs": list(Tab.objects.filter(user=user).values_list("conversation_id", flat=True)),
        "managed": None
        if conversation is None
        else {
            "archived": conversation.archived_at is not None,
            "deleted": conversation.deleted_at is not None,
            "prompt": (conversation.system_prompt_template, conversation.system_prompt),
            "forks": conversation.forks.count(),
        },
        "presets": list(
            SystemPromptPreset.objects.filter(owner=user).values_list("name", "template")
        ),
        "conversations": Conversation.objects.filter(owner=user).count(),
        "theme": UserSettings.objects.filter(user=user).values_list("theme", flat=True).first(),
    }


FAILED_TURN = "turn-1700000000000-failed"


@database_sync_to_async
def setup(
    user,
    other_user,
    *,
    status="idle",
    queued: str | None = None,
    tabs=(),
    archived=False,
    preset: str | None = None,
    failed=False,
    turns: int = 0,
) -> str | None:
    """A fresh conversation of the user (with ``turns`` answered prompts in its log),
    someone else's, and maybe a queued text (its id) or a failed turn (FAILED_TURN, in both
    conversations)."""
    _log.conversation_ensure(user=user, conversation_id=CONVERSATION, title="Old")
    _log.conversation_ensure(user=other_user, conversation_id=THEIRS, title="Bob's")
    Conversation.objects.filter(pk=CONVERSATION).update(
        status=status,
        archived_at=timezone.now() if archived else None,
        last_turn_number=turns,
    )
    for n in range(turns):
        _log.chunks_append(
            conversation_id=CONVERSATION,
            messages=[
                Message("user", [{"type": "text", "text": f"question {n}"}]),
                Message("assistant", [{"type": "text", "text": f"answer {n}"}]),
            ],
        )
    SystemPromptPreset.objects.filter(owner=user).delete()
    if preset is not None:
        SystemPromptPreset.objects.create(owner=user, name=PRESET, template=preset)
    if failed:
        for n, conversation_id in enumerate((CONVERSATION, THEIRS)):
            turn_id = f"{FAILED_TURN}{n}"
            _log.turn_begin(
                conversation_id=conversation_id, turn_id=turn_id, model=MODEL, worker=""
            )
            prompt = Message("user", [{"type": "text", "text": "try again"}])
            _log.chunks_append(conversation_id=conversation_id, messages=[prompt], turn_id=turn_id)
            _log.turn_seal(turn_id=turn_id, metrics=TurnMetrics(turn_id, "error", model=MODEL))
    for position, conversation_id in enumerate(tabs):
        _log.conversation_ensure(user=user, conversation_id=conversation_id)
        Tab.objects.create(user=user, conversation_id=conversation_id, position=position)
    if queued is not None:
        return str(_log.queue_push(conversation_id=CONVERSATION, text=queued).pk)
    return None


@pytest.fixture
def ctx(user, token, django_user_model):
    operator = django_user_model.objects.create_superuser("operator", password="x")
    admin = Client()
    admin.force_login(operator)
    return Ctx(user=user, token=token, admin=admin)


@pytest.fixture
def clean_state(user, other_user):
    """Every transport's run starts from the same database."""

    async def reset():
        @database_sync_to_async
        def wipe():
            Attachment.objects.filter(owner__in=[user, other_user]).delete()
            Conversation.objects.filter(owner__in=[user, other_user]).delete()
            UserSettings.objects.filter(user__in=[user, other_user]).delete()

        await wipe()

    return reset


# ---------------------------------------------------------------- the same result


@dataclass(frozen=True)
class Case:
    intent: str
    value: object
    setup: dict
    # The web app's send also opens the conversation as a tab (a second intent): the tab and
    # its announcement are left out of the comparison.
    ignore: frozenset = frozenset()


ATTACHMENT = "ATTACHMENT"  # stands for a fresh attachment of the user
CASES = [
    Case("rename", "  Lisbon   trip ", {}),
    Case("model", MODEL, {}),
    Case("effort", "low", {}),
    Case("cwd", "project", {}),
    Case("close", None, {"tabs": (CONVERSATION,)}),
    Case("open", None, {"status": "closed"}),
    Case("tabs", ["t2", CONVERSATION, "t1"], {"tabs": (CONVERSATION, "t1", "t2")}),
    Case("queue-cancel", "QUEUED", {"queued": "later please"}),
    Case("stop", None, {}),
    Case("send", "hello there", {}, frozenset({"tabs", "user.conversations"})),
    Case("compaction", 30, {}),
    Case("compact", None, {"turns": 6}),
    Case("continue", None, {"turns": 1}),
    Case("system-prompt", "Be brief. Chat {{conversation_id}}.", {}),
    Case("preset-save", "Be brief.", {}),
    Case("preset-delete", None, {"preset": "Be brief."}),
    Case("fork", None, {}),
    Case("archive", None, {"tabs": (CONVERSATION,)}),
    Case("restore", None, {"archived": True}),
    Case("delete", None, {"tabs": (CONVERSATION,)}),
    Case(
        "import",
        {"format": "dispatch.conversation", "version": 1, "conversation": {"title": "Imp"}},
        {},
    ),
    Case("theme", "dark", {}),
    Case("retry", FAILED_TURN + "0", {"failed": True}),
    Case("send-attachments", [ATTACHMENT], {}, frozenset({"tabs", "user.conversations"})),
    Case("attach", b"some notes", {}),
    Case("detach", ATTACHMENT, {}),
]
# Intents only one transport offers: cwd and import (the JSON API; the web app's import
# posts to that same route), the web app's Retry button, and uploading and removing an
# attachment (the JSON API; the web app's page calls those same routes).
ONE_TRANSPORT = {"cwd", "import", "retry", "attach", "detach"}
# Intents that tell no socket about themselves.
SILENT = {"stop", "attach", "detach"}


async def fresh_attachment(user, value):
    """``value`` with ATTACHMENT standing for a new attachment of the user (its id)."""
    if value != ATTACHMENT and value != [ATTACHMENT]:
        return value
    # An image: a file would be saved into the working directory, which outlives a run.
    file = SimpleUploadedFile("dot.png", png_bytes(2, 2))
    attachment = await attachment_upload(user=user, name="dot.png", content_type="", file=file)
    return attachment.pk if value == ATTACHMENT else [attachment.pk]


@pytest.mark.parametrize("case", CASES, ids=[c.intent for c in CASES])
async def test_every_transport_stores_and_announces_the_same(
    case, ctx, scripted, user, other_user, clean_state
):
    outcomes = {}
    for transport in offering(case.intent):
        await clean_state()
        queued_id = await setup(user, other_user, **case.setup)
        value = queued_id if case.value == "QUEUED" else case.value
        value = await fresh_attachment(user, value)
        if case.intent in ("send", "compact", "continue", "retry", "send-attachments"):
            script_answers(scripted, "general kenobi")
        async with Capture(user.pk, CONVERSATION) as capture:
            refusal = await transport.run(ctx, case.intent, CONVERSATION, value)
            announced = await capture.messages()
        stored = await state(user, CONVERSATION)
        stored = {k: v for k, v in stored.items() if k not in case.ignore}
        # Collapsed after the ignored kinds are left out: a `user.conversations` between
        # two deltas would otherwise keep them apart.
        announced = _collapsed([m for m in announced if m[0] not in case.ignore])
        outcomes[transport.name] = (refusal, stored, announced)
    assert len(outcomes) >= 2 or case.intent in ONE_TRANSPORT, outcomes
    first_name, first = next(iter(outcomes.items()))
    assert first[0] is None, first  # the request is a good one
    for name, outcome in outcomes.items():
        assert outcome == first, f"{name} differs from {first_name}"
    assert first[2] or case.intent in SILENT, "the intent announced nothing"


# ---------------------------------------------------------------- the same refusal

TOO_LONG_TITLE = "x" * 201
BAD_INPUTS = [
    # (intent, bad value, the message every transport must answer)
    ("rename", TOO_LONG_TITLE, "title: must be at most 200 characters"),
    ("rename", 5, "title: Input should be a valid string"),
    ("rename", "   ", "title: must not be empty"),
    ("model", "nope/x", None),  # the catalog's message, checked equal across transports
    ("model", 5, "model: Input should be a valid string"),
    ("effort", "extreme", None),
    ("effort", 5, None),
    ("cwd", "../outside", "cwd: must be a directory inside your workspace"),
    ("cwd", "a\0b", "cwd: must not contain NUL characters"),
    ("send", "x" * 200_001, "message: String should have at most 200000 characters"),
    ("send", 5, "message: Input should be a valid string"),
    ("send", "a\0b", "message: must not contain NUL characters"),
    ("queue", "x" * 200_001, "text: String should have at most 200000 characters"),
    ("queue", 5, "text: Input should be a valid string"),
    ("queue-cancel", "²", None),
    ("tabs", ["missing"], "conversationIds: must name every open tab exactly once"),
    ("tabs", "x", None),
    ("compaction", 101, "threshold: Input should be less than or equal to 100"),
    ("compaction", "x", "threshold: Input should be a valid integer"),
    ("compact", None, TOO_SHORT.format(keep=10)),
    ("continue", None, "there is no answer to continue in this conversation"),
    ("system-prompt", "Hi {{nope}}", None),
    ("system-prompt", "[if cwd]open", "template: line 1: [if] is never closed with [endif]"),
    ("system-prompt", 5, "template: Input should be a valid string"),
    ("preset-save", "{{file:/etc/passwd}}", None),
    ("fork", 0, "beforeSeq: Input should be greater than or equal to 1"),
    ("fork", 7, "beforeSeq: must be at most 1 (the latest seq + 1)"),
    ("fork", "x", "beforeSeq: Input should be a valid integer"),
    ("theme", "purple", None),
    ("theme", 5, None),
    ("retry", 5, "turnId: Input should be a valid string"),
    ("retry", "turn-unknown", "turn not found: turn-unknown"),
    ("send-attachments", ["att_missing"], "attachment not found: att_missing"),
    ("send-attachments", "att_x", "attachments: Input should be a valid list"),
    ("send-attachments", [5], "attachments.0: Input should be a valid string"),
    (
        "send-attachments",
        [f"att_{n}" for n in range(11)],
        "attachments: at most 10 per message (11 given)",
    ),
    ("attach", b"", "file: notes.txt is empty (0 bytes)"),
    ("detach", "att_missing", "attachment not found: att_missing"),
]


ADMIN_FIELD_LENGTH = {"rename": 200, "model": 300, "cwd": 1000}


def can_express(transport: Transport, intent: str, value) -> bool:
    """The admin's form refuses some values itself, before any service: a non-string, a NUL
    character, a value longer than its field, an effort outside its choices, a queued message
    that is not in its list. The socket frames and the API can carry anything."""
    if isinstance(transport, Admin):
        return (
            isinstance(value, str)
            and "\0" not in value
            and len(value) <= ADMIN_FIELD_LENGTH.get(intent, 0)
        )
    return True


@pytest.mark.parametrize(
    ("intent", "value", "message"), BAD_INPUTS, ids=[f"{i}-{v!r:.12}" for i, v, _ in BAD_INPUTS]
)
async def test_the_same_bad_input_gets_the_same_refusal(
    intent, value, message, ctx, scripted, user, other_user, clean_state
):
    refusals = {}
    for transport in offering(intent):
        if not can_express(transport, intent, value):
            continue
        await clean_state()
        await setup(user, other_user, tabs=(CONVERSATION,))
        before = await state(user, CONVERSATION)
        refusals[transport.name] = await transport.run(ctx, intent, CONVERSATION, value)
        assert await state(user, CONVERSATION) == before, f"{transport.name} changed something"
    assert len(set(refusals.values())) == 1, refusals
    refusal = next(iter(refusals.values()))
    assert refusal, refusals
    if message is not None:
        assert refusal == message


# Intents that name no conversation (the caller's own tabs, presets, imports, theme,
# attachments: they name only themselves).
NO_CONVERSATION = {"tabs", "preset-save", "preset-delete", "import", "theme", "attach", "detach"}
SOMEONE_ELSES = sorted({i for t in TRANSPORTS for i in t.intents} - NO_CONVERSATION)


@pytest.mark.parametrize("intent", SOMEONE_ELSES)
async def test_someone_elses_conversation_is_not_found_everywhere(
    intent, ctx, scripted, user, other_user, clean_state
):
    values = {"send": "hi", "queue": "hi", "rename": "Mine", "model": MODEL, "effort": "low"}
    values |= {"cwd": "x", "queue-cancel": "1", "compaction": 10, "retry": FAILED_TURN + "1"}
    values |= {"send-attachments": [ATTACHMENT]}
    refusals = {}
    for transport in offering(intent):
        if isinstance(transport, Admin):
            continue  # operators act on every conversation, as its owner
        await clean_state()
        await setup(user, other_user, failed=intent == "retry")
        value = await fresh_attachment(user, values.get(intent))
        refusals[transport.name] = await transport.run(ctx, intent, THEIRS, value)
    assert set(refusals.values()) == {NOT_FOUND}, refusals


RATE_LIMITED = "too many turns: at most 1 per 60s, try again in a moment"


@pytest.mark.parametrize("intent", ["send", "queue"])
async def test_rate_limited_everywhere(
    intent, ctx, scripted, user, other_user, settings, clean_state
):
    settings.DISPATCH_TURN_RATE_LIMIT = 1
    settings.DISPATCH_TURN_RATE_WINDOW = 60
    refusals = {}
    for transport in offering(intent):
        from django.core.cache import cache

        cache.clear()
        await clean_state()
        await setup(user, other_user)
        await turn_rate_check(user=user)  # the one turn allowed this minute
        refusals[transport.name] = await transport.run(ctx, intent, CONVERSATION, "hi")
    assert set(refusals.values()) == {RATE_LIMITED}, refusals

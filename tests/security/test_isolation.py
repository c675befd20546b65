"""Two users: nothing of one user's conversations reaches the other, over HTTP or WebSocket.

Every operation of the OpenAPI document is listed in CALLS, so a new endpoint fails
``test_every_endpoint_is_covered`` until its isolation is decided here.
"""

from __future__ import annotations

import json
import threading

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import AsyncClient

from chat import services
from chat.api import api
from chat.models import (
    Attachment,
    Conversation,
    QueuedMessage,
    SystemPromptPreset,
    group_name_for,
)
from chat.services import _log, attachment_upload
from tests.chat.providers.sse_server import Reply, openai_text_reply
from tests.security.conftest import (
    COMPLETIONS,
    MODEL,
    api_client,
    application,
    deltas,
    frames_until,
    run_turn,
    script_answers,
    sealed,
    socket,
)

pytestmark = pytest.mark.django_db(transaction=True)

ALICE_CONVERSATION = "alice-conv-1"
PROMPT = "alpha prompt 7f3a"
ANSWER = "alpha answer 9c1e"
QUEUED = "alpha queued 5e2b"
ATTACHMENT = "alpha photo 3d9f.txt"
SECRETS = (PROMPT, ANSWER, QUEUED, ATTACHMENT)
UPLOAD = {"upload": True}  # a multipart body with one file, not JSON

# (method, OpenAPI path) → the request Bob sends: a JSON body or None. Paths with a
# {conversation_id} are filled with Alice's conversation; every such call must be a 404.
CALLS: dict[tuple[str, str], dict | None] = {
    ("POST", "/chat"): {"conversationId": ALICE_CONVERSATION, "message": "hi", "model": MODEL},
    ("GET", "/models"): None,
    ("GET", "/conversations"): None,
    ("GET", "/conversations/{conversation_id}"): None,
    ("POST", "/conversations/{conversation_id}/stop"): None,
    ("POST", "/conversations/{conversation_id}/close"): None,
    ("POST", "/conversations/{conversation_id}/queue"): {"text": "bob text"},
    ("DELETE", "/conversations/{conversation_id}/queue/{message_id}"): None,
    ("GET", "/conversations/{conversation_id}/title"): None,
    ("PUT", "/conversations/{conversation_id}/title"): {"title": "bob title"},
    ("GET", "/conversations/{conversation_id}/model"): None,
    ("PUT", "/conversations/{conversation_id}/model"): {"model": MODEL},
    ("GET", "/conversations/{conversation_id}/reasoning-effort"): None,
    ("PUT", "/conversations/{conversation_id}/reasoning-effort"): {"reasoningEffort": "low"},
    ("GET", "/conversations/{conversation_id}/cwd"): None,
    ("PUT", "/conversations/{conversation_id}/cwd"): {"cwd": "bob"},
    ("POST", "/conversations/{conversation_id}/open"): None,
    ("GET", "/conversations/{conversation_id}/metrics"): None,
    ("POST", "/conversations/{conversation_id}/compact"): None,
    ("GET", "/conversations/{conversation_id}/compaction"): None,
    ("PUT", "/conversations/{conversation_id}/compaction"): {"threshold": 10},
    ("POST", "/conversations/{conversation_id}/continue"): None,
    ("GET", "/tabs"): None,
    ("PUT", "/tabs"): {"conversationIds": []},
    ("GET", "/metrics/throughput"): None,
    ("GET", "/preferences"): None,
    ("PUT", "/preferences"): {"theme": "light"},
    ("GET", "/health"): None,
    ("DELETE", "/conversations/{conversation_id}"): None,
    ("GET", "/conversations/{conversation_id}/system-prompt"): None,
    ("PUT", "/conversations/{conversation_id}/system-prompt"): {"template": "bob's"},
    ("POST", "/conversations/{conversation_id}/fork"): {},
    ("GET", "/conversations/{conversation_id}/forks"): None,
    ("POST", "/conversations/{conversation_id}/archive"): None,
    ("POST", "/conversations/{conversation_id}/restore"): None,
    ("GET", "/conversations/{conversation_id}/export"): None,
    # Bob's own: an import makes a conversation of his; presets are per user.
    ("POST", "/conversations"): {
        "format": "dispatch.conversation",
        "version": 1,
        "conversation": {"title": "bob's import"},
    },
    ("GET", "/system-prompt-presets"): None,
    ("PUT", "/system-prompt-presets/{name}"): {"template": "bob's preset"},
    ("DELETE", "/system-prompt-presets/{name}"): None,
    ("GET", "/search"): None,
    ("POST", "/attachments"): UPLOAD,
    ("GET", "/attachments/{attachment_id}"): None,
    ("GET", "/attachments/{attachment_id}/content"): None,
    ("DELETE", "/attachments/{attachment_id}"): None,
}
# Calls that name no conversation: they answer 200 with the caller's own data only.
OWN_DATA = {
    ("GET", "/tabs"),
    ("PUT", "/tabs"),
    ("GET", "/models"),
    ("GET", "/conversations"),
    ("GET", "/metrics/throughput"),
    ("GET", "/preferences"),
    ("PUT", "/preferences"),
    ("GET", "/health"),
    ("POST", "/conversations"),
    ("GET", "/system-prompt-presets"),
    ("PUT", "/system-prompt-presets/{name}"),
    ("DELETE", "/system-prompt-presets/{name}"),
    ("GET", "/search"),
    ("POST", "/attachments"),
}
OWN_DATA_STATUS = {("POST", "/attachments"): 201}
ALICE_CONVERSATION_CALLS = (set(CALLS) - OWN_DATA) | {("POST", "/chat")}
PUBLIC = {("GET", "/health")}
ALICE_PRESET = "alpha preset"
QUEUE_SURFACE = {"surfaceId": "message-queue", "conversationId": ALICE_CONVERSATION}


def operation_id(operation: tuple[str, str]) -> str:
    return " ".join(operation)


def openapi_operations() -> set[tuple[str, str]]:
    paths = api.get_openapi_schema()["paths"]
    return {(method.upper(), path) for path, ops in paths.items() for method in ops}


def test_every_endpoint_is_covered():
    assert openapi_operations() == set(CALLS)


async def call(
    client,
    method: str,
    path: str,
    body: dict | None,
    *,
    message_id: str = "1",
    attachment_id: str = "att_none",
):
    url = path.format(
        conversation_id=ALICE_CONVERSATION,
        message_id=message_id,
        name=ALICE_PRESET,
        attachment_id=attachment_id,
    )
    send = getattr(client, method.lower())
    if body is None:
        return await send(url)
    if body is UPLOAD:
        return await send(url, {"file": SimpleUploadedFile("bob.txt", b"bob's own")})
    return await send(url, json.dumps(body), content_type="application/json")


def assert_no_secret(response_or_frames) -> None:
    raw = (
        response_or_frames.content.decode()
        if hasattr(response_or_frames, "content")
        else json.dumps(response_or_frames)
    )
    for secret in SECRETS:
        assert secret not in raw


@pytest.fixture
async def alice_conversation(scripted, token, user):
    """Alice's conversation: one sealed turn (prompt + answer + metrics), a queued text and a
    system prompt preset of hers."""
    await run_turn(scripted, token, ALICE_CONVERSATION, PROMPT, ANSWER)
    await services.preset_save(user=user, name=ALICE_PRESET, template=f"Say {PROMPT}")
    queued = await database_sync_to_async(_log.queue_push)(
        conversation_id=ALICE_CONVERSATION, text=QUEUED
    )
    return str(queued.pk)


@pytest.fixture
async def alice_attachment(user) -> str:
    """An attachment Alice uploaded (not sent yet): its id."""
    file = SimpleUploadedFile(ATTACHMENT, PROMPT.encode())
    attachment = await attachment_upload(
        user=user, name=ATTACHMENT, content_type="text/plain", file=file
    )
    return attachment.pk


async def alice_state() -> dict:
    @database_sync_to_async
    def read():
        conversation = Conversation.objects.get(pk=ALICE_CONVERSATION)
        return {
            "conversation": (
                conversation.title,
                conversation.status,
                conversation.model,
                conversation.reasoning_effort,
                conversation.last_seq,
                conversation.compact_threshold,
            ),
            "queue": list(
                QueuedMessage.objects.filter(conversation_id=ALICE_CONVERSATION).values_list(
                    "text", flat=True
                )
            ),
            "attachments": list(
                Attachment.objects.filter(owner__username="alice").values_list(
                    "id", "conversation_id", "name", "sent_at"
                )
            ),
            "presets": list(SystemPromptPreset.objects.values_list("owner__username", "template")),
            "archived": conversation.archived_at,
            "deleted": conversation.deleted_at,
        }

    return await read()


async def test_alice_reads_her_own_conversation(alice_conversation, token):
    """The baseline the other tests negate: the secrets are there for their owner."""
    client = api_client(token)
    history = await call(client, "GET", "/conversations/{conversation_id}", None)
    assert PROMPT in history.content.decode() and ANSWER in history.content.decode()
    metrics = await call(client, "GET", "/conversations/{conversation_id}/metrics", None)
    assert len(metrics.json()["turns"]) == 1
    throughput = await call(client, "GET", "/metrics/throughput", None)
    assert throughput.json()["models"][0]["turns"] == 1
    listing = await call(client, "GET", "/conversations", None)
    assert [c["id"] for c in listing.json()["conversations"]] == [ALICE_CONVERSATION]


@pytest.mark.parametrize("operation", sorted(ALICE_CONVERSATION_CALLS), ids=operation_id)
async def test_bob_gets_404_for_alice_conversation(
    operation, alice_conversation, alice_attachment, other_token
):
    before = await alice_state()
    method, path = operation
    response = await call(
        api_client(other_token),
        method,
        path,
        CALLS[operation],
        message_id=alice_conversation,
        attachment_id=alice_attachment,
    )
    assert response.status_code == 404, response.content
    assert set(response.json()) == {"error"}
    assert_no_secret(response)
    assert await alice_state() == before


@pytest.mark.parametrize("operation", sorted(OWN_DATA), ids=operation_id)
async def test_bob_sees_only_his_own_data(
    operation, alice_conversation, alice_attachment, other_token
):
    method, path = operation
    before = await alice_state()
    response = await call(api_client(other_token), method, path, CALLS[operation])
    assert await alice_state() == {
        **before,
        # Bob's own preset of the same name sits next to Alice's, which is unchanged.
        "presets": before["presets"] + [("bob", "bob's preset")]
        if operation == ("PUT", "/system-prompt-presets/{name}")
        else before["presets"],
    }
    assert response.status_code == OWN_DATA_STATUS.get(operation, 200), response.content
    assert alice_attachment not in response.content.decode()
    assert_no_secret(response)
    assert ALICE_CONVERSATION not in response.content.decode()
    if path == "/metrics/throughput":
        assert response.json()["models"] == []


@pytest.mark.parametrize("operation", sorted(set(CALLS) - PUBLIC), ids=operation_id)
async def test_anonymous_gets_401(operation, alice_conversation, alice_attachment):
    method, path = operation
    response = await call(
        api_client(None), method, path, CALLS[operation], attachment_id=alice_attachment
    )
    assert response.status_code == 401, response.content
    assert set(response.json()) == {"error"}
    assert_no_secret(response)


async def test_bob_cannot_read_alice_transcript_windows(alice_conversation, other_user, user):
    """The web app's transcript window (``/c/<id>/turns``) and ``/c/<id>?at=`` are 404 for
    anyone but the owner, like the page itself."""
    bob, alice = AsyncClient(), AsyncClient()
    await bob.aforce_login(other_user)
    await alice.aforce_login(user)
    for path in ("/turns?beforeSeq=3", "/turns?sinceSeq=0", "?at=1"):
        mine = await alice.get(f"/c/{ALICE_CONVERSATION}{path}")
        assert mine.status_code == 200, path
        theirs = await bob.get(f"/c/{ALICE_CONVERSATION}{path}")
        assert theirs.status_code == 404, path
        assert_no_secret(theirs)
    assert PROMPT in (await alice.get(f"/c/{ALICE_CONVERSATION}/turns?sinceSeq=0")).content.decode()


async def test_bob_cannot_put_alice_conversation_in_his_tabs(
    alice_conversation, token, other_token
):
    await call(api_client(token), "POST", "/conversations/{conversation_id}/open", None)
    response = await call(
        api_client(other_token), "PUT", "/tabs", {"conversationIds": [ALICE_CONVERSATION]}
    )
    assert response.status_code == 400, response.content
    assert response.json() == {"error": "conversationIds: must name every open tab exactly once"}
    alice_tabs = await call(api_client(token), "GET", "/tabs", None)
    assert alice_tabs.json() == {"conversationIds": [ALICE_CONVERSATION]}
    bob_tabs = await call(api_client(other_token), "GET", "/tabs", None)
    assert bob_tabs.json() == {"conversationIds": []}


async def test_preferences_are_each_users_own(token, other_token):
    alice, bob = api_client(token), api_client(other_token)
    assert (await call(alice, "PUT", "/preferences", {"theme": "dark"})).json() == {"theme": "dark"}
    assert (await call(bob, "GET", "/preferences", None)).json() == {"theme": "system"}
    assert (await call(bob, "PUT", "/preferences", {"theme": "light"})).json() == {"theme": "light"}
    assert (await call(alice, "GET", "/preferences", None)).json() == {"theme": "dark"}


async def test_a_retry_of_alice_turn_from_bobs_page_is_refused(alice_conversation, other_token):
    """The web app's Retry names a turn: Bob's page may not retry a turn of Alice's."""
    before = await alice_state()
    turn_id = await database_sync_to_async(
        lambda: Conversation.objects.get(pk=ALICE_CONVERSATION).turns.get().id
    )()
    bob, connected, _ = await socket(f"/ws/ui?conversation=bob-page&token={other_token}")
    assert connected
    await bob.send_to(text_data=json.dumps({"action": "retry", "turn": turn_id}))
    html = ""
    while "turn not found" not in html:
        html = await bob.receive_from(timeout=10)
    assert f"turn not found: {turn_id}" in html
    await bob.disconnect()
    assert await alice_state() == before


# ---------------------------------------------------------------- WebSocket


def socket_ops(message_id: str) -> list[dict]:
    """Every JSON socket op that names a conversation, aimed at Alice's."""
    ref = {"conversationId": ALICE_CONVERSATION}
    return [
        {"type": "chat.send", "message": "bob here", "model": MODEL, **ref},
        {"type": "chat.subscribe", **ref},
        {"type": "chat.queue", "text": "bob text", **ref},
        {"type": "chat.queue.cancel", "messageId": message_id, **ref},
        {"type": "chat.compact", **ref},
        {"type": "subscribe", "surfaceId": "message-queue", **ref},
        {"type": "invoke", "surfaceId": "message-queue", "actionId": f"cancel:{message_id}", **ref},
    ]


async def test_every_socket_op_on_alice_conversation_is_an_error(alice_conversation, other_token):
    before = await alice_state()
    bob, connected, _ = await socket(token=other_token)
    assert connected
    assert (await bob.receive_json_from(timeout=10))["type"] == "catalog"
    for frame in socket_ops(alice_conversation):
        await bob.send_json_to(frame)
        reply = await bob.receive_json_from(timeout=10)
        assert reply == {
            # Surface ops answer with the surface protocol's `error`, chat ops with `chat.error`.
            "type": "error" if frame["type"] in {"subscribe", "invoke"} else "chat.error",
            "conversationId": ALICE_CONVERSATION,
            "message": f"conversation not found: {ALICE_CONVERSATION}",
        }, frame
    await bob.disconnect()
    assert await alice_state() == before


async def test_events_of_a_turn_reach_only_its_owner(scripted, token, other_token):
    script_answers(scripted, ANSWER, "bob answer")
    alice, _, _ = await socket(token=token)
    bob, _, _ = await socket(token=other_token)
    for communicator in (alice, bob):
        assert (await communicator.receive_json_from(timeout=10))["type"] == "catalog"

    await alice.send_json_to(
        {"type": "chat.send", "conversationId": ALICE_CONVERSATION, "message": PROMPT}
    )
    alice_frames = await frames_until(alice, sealed(ALICE_CONVERSATION))
    assert deltas(alice_frames, ALICE_CONVERSATION) == ANSWER

    # Bob's own turn travels through the same channel layer after Alice's: any event of hers
    # routed to Bob would be queued ahead of his and show up before his turn-sealed.
    await bob.send_json_to({"type": "chat.send", "conversationId": "bob-conv", "message": "hi"})
    bob_frames = await frames_until(bob, sealed("bob-conv"))
    assert deltas(bob_frames, "bob-conv") == "bob answer"
    assert_no_secret(bob_frames)
    assert [f for f in bob_frames if ALICE_CONVERSATION in json.dumps(f)] == []
    await alice.disconnect()
    await bob.disconnect()


async def test_subscribing_before_the_owner_creates_the_conversation_leaks_nothing(
    scripted, token, other_token
):
    """Bob subscribes (chat and message-queue surface) to an id Alice has not created yet;
    then Alice runs a turn there and queues a message during it."""
    gate = threading.Event()
    scripted.script(
        COMPLETIONS,
        Reply(events=[gate, *openai_text_reply(ANSWER).events]),
        openai_text_reply("alpha second answer"),
        openai_text_reply("bob answer"),
    )
    bob, _, _ = await socket(token=other_token)
    assert (await bob.receive_json_from(timeout=10))["type"] == "catalog"
    await bob.send_json_to({"type": "chat.subscribe", "conversationId": ALICE_CONVERSATION})
    await bob.send_json_to({"type": "subscribe", **QUEUE_SURFACE})
    surface = await bob.receive_json_from(timeout=10)
    assert surface["type"] == "surface"  # an empty queue: the conversation does not exist yet
    # Bob's socket really is in the conversation's group: only the delivery check stands
    # between Alice's events and him.
    assert len(get_channel_layer().groups[group_name_for(ALICE_CONVERSATION)]) == 1

    alice, _, _ = await socket(token=token)
    assert (await alice.receive_json_from(timeout=10))["type"] == "catalog"
    await alice.send_json_to(
        {"type": "chat.send", "conversationId": ALICE_CONVERSATION, "message": PROMPT}
    )
    await frames_until(alice, lambda f: f.get("event", {}).get("type") == "turn-start")
    await alice.send_json_to({"type": "subscribe", **QUEUE_SURFACE})
    await alice.send_json_to({"type": "chat.queue", "text": QUEUED, **QUEUE_SURFACE})
    queued = await frames_until(alice, lambda f: f["type"] == "update")
    assert QUEUED in json.dumps(queued[-1])  # the queue update Bob must not get
    gate.set()
    first = await frames_until(alice, sealed(ALICE_CONVERSATION))
    second = await frames_until(alice, sealed(ALICE_CONVERSATION))  # the queued text's turn
    assert deltas(first + second, ALICE_CONVERSATION) == ANSWER + "alpha second answer"

    await bob.send_json_to({"type": "chat.send", "conversationId": "bob-conv", "message": "hi"})
    bob_frames = await frames_until(bob, sealed("bob-conv"))
    assert deltas(bob_frames, "bob-conv") == "bob answer"
    assert_no_secret(bob_frames)
    assert [f for f in bob_frames if ALICE_CONVERSATION in json.dumps(f)] == []
    await alice.disconnect()
    await bob.disconnect()


async def test_bob_sending_to_alice_running_conversation_is_not_found_not_a_conflict(
    scripted, token, other_token
):
    """A turn start checks the owner in its opening transaction, not in a read of its own
    (when the frame names the model): a turn running there must still not show through as
    "already running" to someone else, by any transport, with a model or without."""
    gate = threading.Event()
    scripted.script(COMPLETIONS, Reply(events=[gate, *openai_text_reply(ANSWER).events]))
    alice, _, _ = await socket(token=token)
    assert (await alice.receive_json_from(timeout=10))["type"] == "catalog"
    await alice.send_json_to(
        {"type": "chat.send", "conversationId": ALICE_CONVERSATION, "message": PROMPT}
    )
    await frames_until(alice, lambda f: f.get("event", {}).get("type") == "turn-start")

    bob, _, _ = await socket(token=other_token)
    assert (await bob.receive_json_from(timeout=10))["type"] == "catalog"
    not_found = f"conversation not found: {ALICE_CONVERSATION}"
    for model in ({"model": MODEL}, {}):
        await bob.send_json_to(
            {"type": "chat.send", "conversationId": ALICE_CONVERSATION, "message": "hi", **model}
        )
        reply = await bob.receive_json_from(timeout=10)
        assert reply == {
            "type": "chat.error", "conversationId": ALICE_CONVERSATION, "message": not_found
        }, model  # fmt: skip
        response = await api_client(other_token).post(
            "/chat",
            json.dumps({"conversationId": ALICE_CONVERSATION, "message": "hi", **model}),
            content_type="application/json",
        )
        assert response.status_code == 404, (model, response.content)
        assert response.json() == {"error": not_found}

    gate.set()
    frames = await frames_until(alice, sealed(ALICE_CONVERSATION))
    assert deltas(frames, ALICE_CONVERSATION) == ANSWER
    assert "hi" not in json.dumps(frames)
    await alice.disconnect()
    await bob.disconnect()


# ---------------------------------------------------------------- attachments


async def test_alice_reads_her_own_attachment(alice_attachment, token):
    """The baseline of the attachment cases: the content is there for its owner."""
    client = api_client(token)
    meta = await client.get(f"/attachments/{alice_attachment}")
    assert meta.status_code == 200 and meta.json()["name"] == ATTACHMENT
    content = await client.get(f"/attachments/{alice_attachment}/content")
    assert b"".join([chunk async for chunk in content.streaming_content]) == PROMPT.encode()


async def test_bob_cannot_send_alice_attachment_by_any_transport(
    alice_conversation, alice_attachment, other_token
):
    before = await alice_state()
    refusal = f"attachment not found: {alice_attachment}"
    message = {"message": "mine now", "attachments": [alice_attachment]}

    response = await api_client(other_token).post(
        "/chat", json.dumps({"conversationId": "bob-1", **message}), content_type="application/json"
    )
    assert response.status_code == 404 and response.json() == {"error": refusal}

    bob, _, _ = await socket(token=other_token)
    assert (await bob.receive_json_from(timeout=10))["type"] == "catalog"
    await bob.send_json_to({"type": "chat.send", "conversationId": "bob-2", **message})
    reply = await bob.receive_json_from(timeout=10)
    assert reply == {"type": "chat.error", "conversationId": "bob-2", "message": refusal}
    await bob.disconnect()

    page = WebsocketCommunicator(
        await application(), f"/ws/ui?conversation=bob-3&token={other_token}"
    )
    assert (await page.connect(timeout=10))[0]
    await page.send_to(text_data=json.dumps({"action": "send", **message}))
    seen = ""
    while refusal not in seen:
        seen += await page.receive_from(timeout=10)
    await page.disconnect()
    assert_no_secret({"seen": seen})

    assert await alice_state() == before
    assert not await Conversation.objects.filter(pk__in=["bob-1", "bob-2", "bob-3"]).aexists()


async def test_search_never_returns_another_users_text(alice_conversation, token, other_token):
    for words in ("alpha", "alpha prompt", "9c1e", "answer"):
        mine = await api_client(token).get(f"/search?q={words}")
        assert mine.json()["results"], words  # the baseline: Alice finds her own text
        theirs = await api_client(other_token).get(f"/search?q={words}")
        assert theirs.status_code == 200
        assert theirs.json()["results"] == []
        assert_no_secret(theirs)


async def test_bob_cannot_import_a_fork_of_alice_conversation(alice_conversation, other_token):
    document = {
        "format": "dispatch.conversation",
        "version": 1,
        "conversation": {"forkedFrom": {"conversationId": ALICE_CONVERSATION, "seq": 1}},
    }
    response = await call(api_client(other_token), "POST", "/conversations", document)
    assert response.status_code == 400
    assert response.json() == {
        "error": f"conversation.forkedFrom: conversation {ALICE_CONVERSATION} is not yours"
    }

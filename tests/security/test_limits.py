"""Request size limits and the per-user turn rate limit (HTTP 429 / ``chat.error``)."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.conf import settings as django_settings
from django.core.cache import caches

from chat.errors import RateLimited
from chat.models import Conversation, QueuedMessage
from chat.ratelimit import turn_rate_check
from tests.security.conftest import MODEL, api_client, run_turn, socket

pytestmark = pytest.mark.django_db(transaction=True)


async def post(token: str, path: str, body: dict):
    return await api_client(token).post(path, json.dumps(body), content_type="application/json")


@database_sync_to_async
def conversation_exists(conversation_id: str) -> bool:
    return Conversation.objects.filter(pk=conversation_id).exists()


async def test_a_message_over_the_length_limit_is_a_400(scripted, token):
    too_long = "x" * (django_settings.DISPATCH_MAX_MESSAGE_CHARS + 1)
    response = await post(token, "/chat", {"conversationId": "c1", "message": too_long})
    assert response.status_code == 400
    assert "message" in response.json()["error"]
    queued = await post(token, "/conversations/c1/queue", {"text": too_long})
    assert queued.status_code == 400
    assert not await conversation_exists("c1")


async def test_a_body_over_the_upload_limit_is_a_413(settings, token):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = await post(token, "/chat", {"conversationId": "c1", "message": "x" * 2000})
    assert response.status_code == 413
    assert response.json() == {"error": "request body too large"}
    assert not await conversation_exists("c1")


async def test_starting_turns_over_the_rate_limit_is_a_429(settings, scripted, token, other_token):
    settings.DISPATCH_TURN_RATE_LIMIT = 2
    settings.DISPATCH_TURN_RATE_WINDOW = 3600  # the window cannot roll over during the test
    await run_turn(scripted, token, "c1", "one", "answer one")
    await run_turn(scripted, token, "c2", "two", "answer two")

    chat = await post(token, "/chat", {"conversationId": "c3", "message": "three", "model": MODEL})
    assert chat.status_code == 429
    assert set(chat.json()) == {"error"}
    # Queueing on an idle conversation would start a turn: refused too, and nothing is queued.
    queue = await post(token, "/conversations/c1/queue", {"text": "more"})
    assert queue.status_code == 429
    assert not await conversation_exists("c3")
    assert not await database_sync_to_async(QueuedMessage.objects.exists)()

    alice, _, _ = await socket(token=token)
    assert (await alice.receive_json_from(timeout=10))["type"] == "catalog"
    await alice.send_json_to({"type": "chat.send", "conversationId": "c4", "message": "four"})
    error = await alice.receive_json_from(timeout=10)
    assert error["type"] == "chat.error"
    assert error["conversationId"] == "c4"
    assert error["message"].startswith("too many turns")
    await alice.disconnect()

    # The limit is per user.
    await run_turn(scripted, other_token, "bob-1", "hello", "answer bob")


async def _two_starts_then_refused(settings, user) -> None:
    """A limit of two turns an hour: the user's third start is refused."""
    settings.DISPATCH_TURN_RATE_LIMIT = 2
    settings.DISPATCH_TURN_RATE_WINDOW = 3600
    await turn_rate_check(user=user)
    await turn_rate_check(user=user)
    with pytest.raises(RateLimited):
        await turn_rate_check(user=user)


async def test_the_in_process_rate_count_needs_no_thread(settings, user, thread_hops):
    """With the local-memory cache the count is taken on the event loop: a start in a burst
    does not wait for the database's thread to count it."""
    await _two_starts_then_refused(settings, user)
    assert thread_hops == []


async def test_the_rate_count_is_shared_through_redis(settings, redis_url, user, other_user):
    """With Redis (every worker's cache) the count is one round trip, off the database's
    thread, and every worker sees the same count."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": redis_url,
            "KEY_PREFIX": f"rate-{uuid.uuid4().hex[:8]}",
        }
    }
    await _two_starts_then_refused(settings, user)
    await turn_rate_check(user=other_user)  # per user
    key = f"turn-rate:{user.pk}:{int(time.time() // 3600)}"
    assert await sync_to_async(caches["default"].get)(key) == 3

"""Fixtures for the security tests: two users, a scripted model, API clients and sockets.

Turns run in the test's own event loop: the catalog's only credential is an OpenAI-format
credential pointing at a real scripted SSE server (tests.chat.providers.sse_server) on
127.0.0.1, so no network and no model are needed.
"""

from __future__ import annotations

import asyncio
import functools
import json
import threading

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.core.cache import cache
from django.test import AsyncClient

from chat.auth import api_token_create
from chat.config import reset_config
from chat.providers import get_catalog, reset_catalog
from chat.running import running_turns
from tests.chat.providers.sse_server import Reply, ScriptedServer, openai_text_reply

COMPLETIONS = "/v1/chat/completions"
MODEL = "scripted/test-model"
SCRIPTED_API_KEY = "sk-scripted-secret-0c5e1f"
TURN_DEADLINE = 30.0


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    """Hashing users' passwords at production cost takes a second each: not what is tested."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _empty_channel_layer():
    """The in-memory channel layer outlives a test: start without other tests' groups."""
    async_to_sync(get_channel_layer().flush)()


@pytest.fixture(autouse=True)
def _fresh_rate_counters():
    """Turn-rate counters live in the process's cache: every test starts from zero."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
async def scripted(tmp_path, settings, monkeypatch):
    """The scripted OpenAI-format server, and a config whose only credential points at it."""
    with ScriptedServer() as server:
        config = tmp_path / "dispatch.toml"
        config.write_text(
            f"""
[runtime]
retry_delays = []

[tools]
workspace_root = "{tmp_path / "workspace"}"

[[credentials]]
name = "scripted"
kind = "openai"
base_url = "{server.url}/v1"
api_key_env = "SCRIPTED_API_KEY"
models = ["test-model"]
"""
        )
        monkeypatch.setenv("SCRIPTED_API_KEY", SCRIPTED_API_KEY)
        settings.DISPATCH_CONFIG = str(config)
        reset_config()
        reset_catalog()
        yield server
        await get_catalog().aclose()  # the connections turns opened in this test's loop
        reset_config()
        reset_catalog()


def script_answers(server: ScriptedServer, *texts: str) -> None:
    server.script(COMPLETIONS, *(openai_text_reply(text) for text in texts))


@pytest.fixture
def other_token(other_user) -> str:
    return api_token_create(user=other_user)


class api_client:  # noqa: N801 - used like a function returning a client
    """An async test client; with a token every request sends ``Authorization: Bearer``.

    (AsyncClient(headers=...) passes its default headers on as ``Http-Authorization``.)
    """

    def __init__(self, token: str | None) -> None:
        self._client = AsyncClient()
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    def __getattr__(self, method: str):
        return functools.partial(getattr(self._client, method), headers=self._headers)


async def ndjson_events(response) -> list[dict]:
    """The AgentEvents of a streaming ``POST /chat`` response, up to ``turn-sealed``."""
    events = []
    async for line in response.streaming_content:
        for part in line.decode().splitlines():
            if part.strip():
                events.append(json.loads(part))
    return events


async def run_turn(
    server: ScriptedServer, token: str, conversation_id: str, message: str, answer: str
) -> list[dict]:
    """Run a whole turn with ``POST /chat`` (the model answers ``answer``); its events.

    Returns once the turn's driver is done too, so the conversation is idle and its queue
    is no longer looked at: the model's stream is held until the driver task is in hand.
    """
    gate = threading.Event()
    server.script(COMPLETIONS, Reply(events=[gate, *openai_text_reply(answer).events]))
    response = await api_client(token).post(
        "/chat",
        {"conversationId": conversation_id, "message": message, "model": MODEL},
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    drive = running_turns.turns[conversation_id].task
    gate.set()
    async with asyncio.timeout(TURN_DEADLINE):  # a bound: a stuck turn fails, never hangs
        events = await ndjson_events(response)
        assert events[-1]["type"] == "turn-sealed"
        await drive
    return events


@database_sync_to_async
def application():
    """The project's ASGI app (imported late and in a thread: importing it runs the start-up
    recovery, which reads the database)."""
    from dispatch_site.asgi import application

    return application


async def socket(
    path: str = "/ws", *, token: str | None = None, headers: list | None = None
) -> tuple[WebsocketCommunicator, bool, int | None]:
    """Open a socket on the real ASGI app (origin check, auth middleware, routing, consumer)."""
    if token:
        path += f"?token={token}"
    communicator = WebsocketCommunicator(await application(), path, headers=headers or [])
    connected, code = await communicator.connect(timeout=10)
    return communicator, connected, code


async def frames_until(communicator: WebsocketCommunicator, stop) -> list[dict]:
    """Every frame received until (and including) the first one for which ``stop`` is true."""
    frames = []
    while True:
        frame = await communicator.receive_json_from(timeout=10)
        frames.append(frame)
        if stop(frame):
            return frames


def deltas(frames: list[dict], conversation_id: str) -> str:
    """The text the frames streamed for one conversation."""
    return "".join(
        f["event"]["delta"]
        for f in frames
        if f["type"] == "chat.delta"
        and f["event"]["conversationId"] == conversation_id
        and f["event"]["type"] == "text-delta"
    )


def sealed(conversation_id: str):
    def stop(frame: dict) -> bool:
        event = frame.get("event", {})
        return event.get("type") == "turn-sealed" and event["conversationId"] == conversation_id

    return stop


@database_sync_to_async
def session_cookie_for(user) -> str:
    """A logged-in session for ``user``, as a ``Cookie`` header value."""
    from django.test import Client

    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"

"""WebSocket authentication: session cookie, Bearer header or ?token=, else close code 4401."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from chat.models import ApiToken
from tests.security.conftest import session_cookie_for, socket

pytestmark = pytest.mark.django_db(transaction=True)

PATHS = ["/ws", "/"]


async def assert_refused(communicator, connected: bool) -> None:
    """The consumer accepts, then closes with 4401 before sending anything."""
    assert connected
    assert await communicator.receive_output(timeout=10) == {
        "type": "websocket.close",
        "code": 4401,
    }
    await communicator.disconnect()


async def assert_open(communicator, connected: bool) -> None:
    assert connected
    assert (await communicator.receive_json_from(timeout=10))["type"] == "catalog"
    await communicator.disconnect()


@pytest.mark.parametrize("path", PATHS)
async def test_no_credentials_is_closed_with_4401(path):
    await assert_refused(*(await socket(path))[:2])


@pytest.mark.parametrize("path", PATHS)
async def test_token_query_parameter_opens_the_socket(path, token):
    await assert_open(*(await socket(path, token=token))[:2])


@pytest.mark.parametrize("path", PATHS)
async def test_bearer_header_opens_the_socket(path, token):
    headers = [(b"authorization", f"Bearer {token}".encode())]
    await assert_open(*(await socket(path, headers=headers))[:2])


@pytest.mark.parametrize("path", PATHS)
async def test_session_cookie_opens_the_socket(path, user):
    cookie = await session_cookie_for(user)
    await assert_open(*(await socket(path, headers=[(b"cookie", cookie.encode())]))[:2])


@pytest.mark.parametrize("path", PATHS)
async def test_unknown_token_is_closed_with_4401(path, token):
    await assert_refused(*(await socket(path, token=token + "x"))[:2])
    headers = [(b"authorization", f"Bearer {token}x".encode())]
    await assert_refused(*(await socket(path, headers=headers))[:2])


@pytest.mark.parametrize("path", PATHS)
async def test_revoked_token_is_closed_with_4401(path, token):
    await database_sync_to_async(ApiToken.objects.update)(revoked=True)
    await assert_refused(*(await socket(path, token=token))[:2])


async def test_token_of_an_inactive_user_is_closed_with_4401(user, token):
    user.is_active = False
    await database_sync_to_async(user.save)()
    await assert_refused(*(await socket(token=token))[:2])


async def test_logged_out_session_is_closed_with_4401(user):
    cookie = await session_cookie_for(user)
    from django.contrib.sessions.models import Session

    await database_sync_to_async(Session.objects.all().delete)()
    await assert_refused(*(await socket(headers=[(b"cookie", cookie.encode())]))[:2])


async def test_a_foreign_origin_is_refused_before_authentication(token):
    headers = [(b"origin", b"https://evil.example")]
    communicator, connected, _ = await socket(token=token, headers=headers)
    assert not connected


async def test_an_allowed_origin_and_no_origin_are_let_through(token):
    await assert_open(
        *(await socket(token=token, headers=[(b"origin", b"http://127.0.0.1:8000")]))[:2]
    )
    # Browsers always send Origin; a script without one still has to bring a token.
    await assert_open(*(await socket(token=token))[:2])

"""WebSocket authentication: session cookie, Bearer header or ?token=, else close code 4401."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from chat.auth import websocket_origin_allowed
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


SITE = [(b"host", b"127.0.0.1:8000")]


async def test_a_foreign_origin_is_refused_before_authentication(token):
    for origin in (b"https://evil.example", b"http://127.0.0.1:9999", b"https://127.0.0.1:8000"):
        headers = [*SITE, (b"origin", origin)]
        communicator, connected, _ = await socket(token=token, headers=headers)
        assert not connected, origin


async def test_an_allowed_origin_and_no_origin_are_let_through(settings, token):
    settings.DISPATCH_CORS_ORIGINS = ["http://localhost:5173"]
    for origin in (b"http://127.0.0.1:8000", b"http://localhost:5173"):
        headers = [*SITE, (b"origin", origin)]
        await assert_open(*(await socket(token=token, headers=headers))[:2])
    # Browsers always send Origin; a script without one still has to bring a token.
    await assert_open(*(await socket(token=token))[:2])


def scope(origin: str | None, host: str | None = "chat.example.com", scheme: str = "ws", **more):
    headers = [(b"host", host.encode())] if host else []
    if origin:
        headers.append((b"origin", origin.encode()))
    headers += [(name.encode(), value.encode()) for name, value in more.items()]
    return {"type": "websocket", "scheme": scheme, "headers": headers}


@pytest.mark.parametrize(
    ("case", "allowed"),
    [
        (scope(None), True),  # not a browser
        (scope("http://chat.example.com"), True),  # the site itself
        (scope("HTTP://Chat.Example.com"), True),
        (scope("https://chat.example.com"), False),  # another scheme …
        (scope("http://chat.example.com:8080"), False),  # … or port is another origin
        (scope("http://evil.example"), False),
        (scope("https://chat.example.com", scheme="wss"), True),
        (scope("http://chat.example.com", scheme="wss"), False),
        (scope("http://chat.example.com:8000", host="chat.example.com:8000"), True),
        (scope("http://rebound.example", host="rebound.example"), False),  # Host not allowed
        (scope("http://chat.example.com", host=None), False),
        (scope("https://client.example.net"), True),  # DISPATCH_CORS_ORIGINS
        (scope("https://client.example.net:444"), False),
        (scope("http://client.example.net"), False),
        (scope("https://admin.example.org"), True),  # CSRF_TRUSTED_ORIGINS
        (scope("https://a.b.example.io"), True),  # … with a *. pattern
        (scope("https://example.io.evil"), False),
        (scope("http://a.example.io"), False),
    ],
)
def test_which_origins_may_open_a_socket(settings, case, allowed):
    settings.ALLOWED_HOSTS = ["chat.example.com"]
    settings.DISPATCH_CORS_ORIGINS = ["https://client.example.net"]
    settings.CSRF_TRUSTED_ORIGINS = ["https://admin.example.org", "https://*.example.io"]
    assert websocket_origin_allowed(case) is allowed


def test_behind_a_proxy_its_forwarded_scheme_counts(settings):
    settings.ALLOWED_HOSTS = ["chat.example.com"]
    https = scope("https://chat.example.com", **{"x-forwarded-proto": "https"})
    assert not websocket_origin_allowed(https)  # the header is not trusted by default
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    assert websocket_origin_allowed(https)
    assert not websocket_origin_allowed(scope("https://chat.example.com"))

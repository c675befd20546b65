"""Who is asking: session cookies for the web app, bearer tokens for JSON clients."""

import hashlib
import secrets
from urllib.parse import parse_qs

from asgiref.sync import sync_to_async
from channels.auth import AuthMiddleware
from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.sessions import CookieMiddleware, SessionMiddleware
from django.contrib.auth.models import AnonymousUser
from django.utils import timezone
from ninja.security import HttpBearer, SessionAuth

from chat.models import ApiToken

TOKEN_PREFIX_LENGTH = 8


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def api_token_create(*, user, name: str = "") -> str:
    """Create an API token for ``user`` and return it; only its digest is stored."""
    token = "dsp_" + secrets.token_urlsafe(32)
    ApiToken.objects.create(
        user=user, name=name, prefix=token[:TOKEN_PREFIX_LENGTH], digest=token_digest(token)
    )
    return token


def user_for_token(token: str):
    """The active user owning a live token, or None."""
    row = (
        ApiToken.objects.select_related("user")
        .filter(digest=token_digest(token), revoked=False, user__is_active=True)
        .first()
    )
    if row is None:
        return None
    ApiToken.objects.filter(pk=row.pk).update(last_used_at=timezone.now())
    return row.user


class BearerAuth(HttpBearer):
    async def authenticate(self, request, token):
        user = await sync_to_async(user_for_token)(token)
        if user is not None:
            request.user = user
        return user


class AsyncSessionAuth(SessionAuth):
    """Session cookie auth for the web app's own calls (CSRF enforced by ninja)."""

    async def authenticate(self, request, key):
        user = await request.auser()
        return user if user.is_authenticated else None


api_auth = [BearerAuth(), AsyncSessionAuth()]


class WebSocketAuthMiddleware(BaseMiddleware):
    """Session cookie, else ``Authorization: Bearer`` header, else ``?token=``.

    Unauthenticated sockets are accepted by no consumer: consumers close them with 4401.
    """

    def __init__(self, inner):
        super().__init__(CookieMiddleware(SessionMiddleware(AuthMiddleware(_TokenAuth(inner)))))


class _TokenAuth(BaseMiddleware):
    async def __call__(self, scope, receive, send):
        user = scope.get("user")
        if user is None or not user.is_authenticated:
            token = _token_from_scope(scope)
            found = await database_sync_to_async(user_for_token)(token) if token else None
            scope["user"] = found or AnonymousUser()
        return await super().__call__(scope, receive, send)


def _token_from_scope(scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return (query.get("token") or [None])[0]

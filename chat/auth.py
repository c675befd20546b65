"""Who is asking: session cookies for the web app, bearer tokens for JSON clients.

Also the WebSocket origin check and the single-use login links of the first run
(docs/security.md describes the whole model).
"""

import hashlib
import os
import secrets
from datetime import timedelta
from urllib.parse import parse_qs

from asgiref.sync import sync_to_async
from channels.auth import AuthMiddleware
from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.security.websocket import OriginValidator
from channels.sessions import CookieMiddleware, SessionMiddleware
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.urls import reverse
from django.utils import timezone
from django.utils.http import base36_to_int, int_to_base36
from ninja.security import HttpBearer, SessionAuth

from chat.models import ApiToken

TOKEN_PREFIX_LENGTH = 8
# A token's last use is recorded to the minute: a database write per request would queue every
# API call behind the turns' writes on SQLite.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def token_digest(token: str) -> str:
    """What is stored of an API token: its SHA-256, hex."""
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
    now = timezone.now()
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=row.pk).update(last_used_at=now)
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


class WebSocketOriginValidator(OriginValidator):
    """Refuse sockets whose ``Origin`` names a host outside ALLOWED_HOSTS.

    A socket without an ``Origin`` header is let through: browsers always send one, so only
    non-browser clients omit it, and they must still bring a token (cross-site WebSocket
    hijacking rides on a browser's cookies, which is exactly what the Origin check stops).
    """

    def __init__(self, application):
        allowed = settings.ALLOWED_HOSTS
        if settings.DEBUG and not allowed:
            allowed = ["localhost", "127.0.0.1", "[::1]"]
        super().__init__(application, allowed)

    def valid_origin(self, parsed_origin) -> bool:
        return parsed_origin is None or self.validate_origin(parsed_origin)


# ---------------------------------------------------------------- one-time login links

LOGIN_LINK_MAX_AGE = timedelta(hours=24)


class _LoginLinkTokens(PasswordResetTokenGenerator):
    """Django's password-reset HMAC, salted for login links and keyed on the full last login.

    Nothing is stored: the token signs the user's password hash and last login, so the login
    it performs (which bumps ``last_login``) spends it, and so does any password change.
    """

    key_salt = "dispatch.auth.login-link"

    def _make_hash_value(self, user, timestamp):
        # Microseconds kept (Django drops them): a second link used in the same second as the
        # previous login must still be spent by its own login.
        last_login = "" if user.last_login is None else user.last_login.isoformat()
        return f"{user.pk}{user.password}{last_login}{timestamp}"

    def check_token(self, user, token):
        if not super().check_token(user, token):
            return False
        issued = base36_to_int(token.split("-")[0])
        return self._num_seconds(self._now()) - issued <= LOGIN_LINK_MAX_AGE.total_seconds()


login_link_tokens = _LoginLinkTokens()


def login_link_token_create(*, user) -> str:
    """A single-use login token for ``user``: ``<user id base36>-<timestamp>-<hmac>``."""
    return f"{int_to_base36(user.pk)}-{login_link_tokens.make_token(user)}"


def user_for_login_link(token: str):
    """The active user a login token is valid for right now, or None."""
    user_part, _, rest = token.partition("-")
    try:
        pk = base36_to_int(user_part)
    except ValueError:
        return None
    user = get_user_model().objects.filter(pk=pk, is_active=True).first()
    if user is None or not login_link_tokens.check_token(user, rest):
        return None
    return user


def login_link_url(token: str) -> str:
    """The absolute URL of the link, on the host and port the server listens on (HOST/PORT)."""
    host = os.environ.get("HOST", "127.0.0.1")
    port = os.environ.get("PORT", "8000")
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address
    if host in {"0.0.0.0", "[::]"}:
        host = "127.0.0.1"  # listening everywhere: this machine is one of them
    scheme = "https" if settings.DISPATCH_HTTPS else "http"
    return f"{scheme}://{host}:{port}{reverse('login-once', args=[token])}"

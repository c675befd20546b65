"""Who is asking: session cookies for the web app, bearer tokens for JSON clients.

Also the WebSocket origin check and the single-use login links of the first run
(docs/security.md describes the whole model; chat.throttle counts failed sign-ins).
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
from channels.security.websocket import WebsocketDenier
from channels.sessions import CookieMiddleware, SessionMiddleware
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AnonymousUser
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.http.request import split_domain_port, validate_host
from django.urls import reverse
from django.utils import timezone
from django.utils.http import base36_to_int, int_to_base36, is_same_domain
from ninja.errors import HttpError
from ninja.security import HttpBearer, SessionAuth
from ninja.utils import check_csrf

from chat.models import ApiToken
from chat.throttle import (
    SignInThrottled,
    request_address,
    scope_address,
    signin_check,
    signin_failed,
)

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


def user_for_token_from(token: str, *, address: str):
    """``user_for_token``, throttled: a bad token counts as a failed sign-in of ``address``,
    and while the address is throttled a bad token raises SignInThrottled.

    A valid token is never throttled: tokens are 256 random bits (guessing one is hopeless),
    so the limit is only there to stop hammering, and a throttled address (a shared NAT) must
    not lock out the clients that hold real tokens. It also keeps the cache (Redis) off the
    path of every API request.
    """
    user = user_for_token(token)
    if user is None:
        signin_check(address=address)
        signin_failed(address=address)
    return user


class BearerAuth(HttpBearer):
    async def authenticate(self, request, token):
        try:
            user = await sync_to_async(user_for_token_from)(token, address=request_address(request))
        except SignInThrottled as exc:
            raise HttpError(429, str(exc)) from exc
        if user is not None:
            request.user = user
        return user


class AsyncSessionAuth(SessionAuth):
    """Session cookie auth for the web app's own calls.

    CSRF is enforced for a session that authenticates, and only then: a request without one
    carries no authority a forged request could ride on, so it gets the API's 401 (not a
    403 about CSRF), and so does a bearer client whose token was refused.
    """

    def _get_key(self, request):
        return request.COOKIES.get(self.param_name)  # CSRF: checked in authenticate()

    async def authenticate(self, request, key):
        user = await request.auser()
        if not user.is_authenticated:
            return None
        if self.csrf and not getattr(request, "_ninja_csrf_exempt", False) and check_csrf(request):
            raise HttpError(403, "CSRF check failed: send the X-CSRFToken header")
        return user


api_auth = [BearerAuth(), AsyncSessionAuth()]


class WebSocketAuthMiddleware(BaseMiddleware):
    """Session cookie, else ``Authorization: Bearer`` header, else ``?token=``.

    Unauthenticated sockets are accepted by no consumer: consumers close them with 4401.
    """

    def __init__(self, inner):
        super().__init__(CookieMiddleware(SessionMiddleware(AuthMiddleware(_TokenAuth(inner)))))


# Close code of a socket whose address made too many failed sign-ins (as HTTP's 429).
CLOSE_THROTTLED = 4429


class _TokenAuth(BaseMiddleware):
    async def __call__(self, scope, receive, send):
        user = scope.get("user")
        if user is None or not user.is_authenticated:
            token = _token_from_scope(scope)
            found = None
            if token:
                try:
                    found = await database_sync_to_async(user_for_token_from)(
                        token, address=scope_address(scope)
                    )
                except SignInThrottled:
                    return await _accept_and_close(receive, send, CLOSE_THROTTLED)
            scope["user"] = found or AnonymousUser()
        return await super().__call__(scope, receive, send)


async def _accept_and_close(receive, send, code: int) -> None:
    """Accept the handshake, then close with ``code``: a browser sees close codes, not the
    HTTP status of a refused handshake."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": code})


def _token_from_scope(scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    return (query.get("token") or [None])[0]


def _header(scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def _allowed_hosts() -> list[str]:
    allowed = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]  # as Django's HttpRequest.get_host()
    return allowed


def _own_origin(scope) -> str | None:
    """``scheme://host[:port]`` of the site as the handshake addressed it, or None when its
    ``Host`` is not one of ALLOWED_HOSTS."""
    host = _header(scope, b"host")
    if not host:
        return None
    domain, _port = split_domain_port(host)
    if not domain or not validate_host(domain, _allowed_hosts()):
        return None
    secure = scope.get("scheme") == "wss"
    if proxy := settings.SECURE_PROXY_SSL_HEADER:
        # Behind a TLS-terminating proxy the handshake reaches us as ws: trust its header,
        # exactly as Django does for HTTP (HttpRequest.is_secure()).
        name, value = proxy
        header = name.removeprefix("HTTP_").replace("_", "-").lower().encode()
        secure = secure or _header(scope, header) == value
    return f"{'https' if secure else 'http'}://{host.lower()}"


def websocket_origin_allowed(scope) -> bool:
    """Whether a handshake's ``Origin`` may open a socket.

    Allowed: no ``Origin`` at all (not a browser), the site's own origin (scheme, host and
    port as the handshake addressed them, the host one of ALLOWED_HOSTS), an origin of
    DISPATCH_CORS_ORIGINS, and one of CSRF_TRUSTED_ORIGINS (``*.`` subdomain patterns as
    Django reads them). Everything is compared as whole origins: scheme, host and port.
    """
    origin = _header(scope, b"origin")
    if origin is None:
        return True
    origin = origin.strip().lower()
    if origin in settings.DISPATCH_CORS_ORIGINS or origin == _own_origin(scope):
        return True
    for trusted in settings.CSRF_TRUSTED_ORIGINS:
        trusted = trusted.lower()
        if origin == trusted:
            return True
        scheme, _, pattern = trusted.partition("://")
        prefix = f"{scheme}://"
        if (
            pattern.startswith("*.")
            and origin.startswith(prefix)
            and is_same_domain(origin.removeprefix(prefix), pattern[1:])
        ):
            return True
    return False


class WebSocketOriginValidator:
    """Refuse the handshake of a socket whose ``Origin`` is not allowed (see
    ``websocket_origin_allowed``), before authentication.

    Cross-site WebSocket hijacking rides on a browser's cookies; browsers always send
    ``Origin``, so a socket without one is a script's, which must still bring a token.
    """

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not websocket_origin_allowed(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)


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

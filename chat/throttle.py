"""Sign-in throttling: wrong passwords, bad login links and bad API tokens (docs/security.md).

Two kinds of fixed-window counters in Django's cache (per process with the default
local-memory cache, shared by every worker when REDIS_URL puts the cache in Redis):

- failed sign-ins per client **address** — wrong passwords, login links and API tokens
  alike — at most ``DISPATCH_SIGNIN_ADDRESS_LIMIT`` per window;
- wrong passwords per **account name**, whether or not such an account exists — at most
  ``DISPATCH_SIGNIN_ACCOUNT_LIMIT`` per window.

The window is ``DISPATCH_SIGNIN_WINDOW`` seconds; a limit of 0 turns that counter off. While
a counter is at its limit every attempt it covers is refused *before* the credentials are
looked at, the right password included, with the same answer for an account that exists and
one that does not, so a throttled client learns nothing about either.

Password sign-ins are throttled for every form that calls ``authenticate()`` (the login page
and the admin's): ``SignInThrottleBackend`` comes first in ``AUTHENTICATION_BACKENDS`` and
refuses throttled attempts; failures are counted from Django's ``user_login_failed`` signal.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import math
import time
from contextlib import contextmanager

from django.conf import settings
from django.contrib.auth.backends import BaseBackend, ModelBackend
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.dispatch import receiver
from redis.exceptions import RedisError

log = logging.getLogger(__name__)


class SignInThrottled(Exception):
    """Too many failed sign-ins lately; ``retry_after`` seconds until the window ends."""

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        minutes = max(1, math.ceil(retry_after / 60))
        unit = "minute" if minutes == 1 else "minutes"
        super().__init__(f"too many failed sign-in attempts; try again in {minutes} {unit}")


# ---------------------------------------------------------------- who is asking


def client_address(remote_addr: str | None, forwarded_for: str | None = None) -> str:
    """The address a client's attempts are counted under.

    Behind a reverse proxy (``DISPATCH_BEHIND_PROXY``) that is the last ``X-Forwarded-For``
    entry, the one the proxy itself added; earlier entries come from the client and prove
    nothing. IPv6 addresses count per /64 network, the block one subscriber usually holds.
    """
    address = remote_addr or ""
    if settings.DISPATCH_BEHIND_PROXY and forwarded_for:
        address = forwarded_for.rsplit(",", 1)[-1].strip()
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address or "unknown"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def request_address(request) -> str:
    """``client_address`` of a Django request."""
    return client_address(request.META.get("REMOTE_ADDR"), request.META.get("HTTP_X_FORWARDED_FOR"))


def scope_address(scope) -> str:
    """``client_address`` of an ASGI (WebSocket) scope."""
    forwarded = None
    for name, value in scope.get("headers", []):
        if name == b"x-forwarded-for":
            forwarded = value.decode("latin-1")
    client = scope.get("client")
    return client_address(client[0] if client else None, forwarded)


# ---------------------------------------------------------------- the counters


def _now() -> float:
    return time.time()  # a seam for tests: windows end without waiting for them


def _address_counter(address: str) -> tuple[str, int]:
    window = int(_now() // settings.DISPATCH_SIGNIN_WINDOW)
    return f"signin:address:{address}:{window}", settings.DISPATCH_SIGNIN_ADDRESS_LIMIT


def _account_counter(account: str) -> tuple[str, int]:
    window = int(_now() // settings.DISPATCH_SIGNIN_WINDOW)
    # Hashed: account names may hold characters a cache key must not; case-folded, so
    # "Alice" and "alice" share one budget.
    name = hashlib.sha256(account.casefold().encode()).hexdigest()[:32]
    return f"signin:account:{name}:{window}", settings.DISPATCH_SIGNIN_ACCOUNT_LIMIT


def _counters(address: str, account: str | None) -> list[tuple[str, int]]:
    counters = [_address_counter(address)]
    if account is not None:
        counters.append(_account_counter(account))
    return [(key, limit) for key, limit in counters if limit > 0]


def _retry_after() -> int:
    window = settings.DISPATCH_SIGNIN_WINDOW
    return max(1, math.ceil(window - _now() % window))


@contextmanager
def _unless_cache_down(what: str):
    """Skip the counting when the cache is unreachable (Redis restarting): every request
    signs in, so a throttle that failed with the cache would take the whole API down with it.
    Attempts pass unthrottled until the cache is back."""
    try:
        yield
    except (RedisError, OSError) as exc:
        log.warning("sign-in throttle: cache unavailable (%s); %s skipped", exc, what)


def signin_check(*, address: str, account: str | None = None) -> None:
    """Raise SignInThrottled when ``address`` (or ``account``) used up its failures."""
    for key, limit in _counters(address, account):
        count = 0
        with _unless_cache_down("check"):
            count = cache.get(key, 0)
        if count >= limit:
            raise SignInThrottled(_retry_after())


def signin_failed(*, address: str, account: str | None = None) -> None:
    """Count one failed sign-in from ``address`` (and for ``account``)."""
    timeout = settings.DISPATCH_SIGNIN_WINDOW + 1
    for key, _limit in _counters(address, account):
        with _unless_cache_down("count"):
            # add() is a no-op when the key exists: concurrent failures cannot reset the count.
            cache.add(key, 0, timeout=timeout)
            cache.incr(key)


def signin_succeeded(*, account: str) -> None:
    """The account's owner signed in: forget its failures (never the address's)."""
    with _unless_cache_down("reset"):
        cache.delete(_account_counter(account)[0])


# ---------------------------------------------------------------- password sign-ins


class SignInThrottleBackend(BaseBackend):
    """First in AUTHENTICATION_BACKENDS: refuses password sign-ins while throttled.

    It authenticates nobody itself (the model backend after it does). A throttled attempt
    raises PermissionDenied, which makes ``authenticate()`` stop and return None; the
    reason is left on the request as ``signin_throttled`` for the login form's message.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None  # not a client's request (management commands, the shell)
        try:
            signin_check(address=request_address(request), account=username)
        except SignInThrottled as exc:
            request.signin_throttled = exc
            raise PermissionDenied(str(exc)) from exc
        return None

    def get_user(self, user_id):
        # A login that names no backend records the first one (the test client's
        # force_login does): such a session's user is the model backend's.
        return ModelBackend().get_user(user_id)


@receiver(user_login_failed, dispatch_uid="dispatch-signin-failed")
def _count_failed_password(sender, credentials, request=None, **kwargs) -> None:
    if request is None or getattr(request, "signin_throttled", None) is not None:
        return  # refused unseen: a throttled attempt does not extend the lockout
    signin_failed(address=request_address(request), account=credentials.get("username"))


@receiver(user_logged_in, dispatch_uid="dispatch-signin-succeeded")
def _forget_account_failures(sender, request, user, **kwargs) -> None:
    signin_succeeded(account=user.get_username())

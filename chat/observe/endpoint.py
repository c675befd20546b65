"""``/-/metrics``: this worker's Prometheus metrics, for a scraper that holds the token or
connects from an allowed address (docs/deploy.md).

An ASGI app in front of Django (dispatch_site.asgi), so a scrape never reaches Django: no
``ALLOWED_HOSTS`` check (Prometheus scrapes each worker by its address), no HTTPS redirect,
no session or database. The exposition itself is prometheus-client's ASGI app.

A request is admitted when it sends ``Authorization: Bearer <DISPATCH_PROMETHEUS_TOKEN>``, or
when it comes straight from an address in ``DISPATCH_PROMETHEUS_ALLOW``. A request that passed
through a proxy (it carries ``X-Forwarded-For``, ``Forwarded`` or ``X-Real-IP``) is never
admitted by its address: its peer is the proxy, which forwards anyone's request.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from prometheus_client import REGISTRY, make_asgi_app

PATH = "/-/metrics"
PROXY_HEADERS = frozenset({b"x-forwarded-for", b"forwarded", b"x-real-ip"})

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
ASGIApp = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Any]


class MetricsEndpoint:
    """The guarded exposition. ``enabled`` once a token or an allow-list is configured."""

    def __init__(self, *, token: str = "", allow: Sequence[Network] = ()) -> None:
        self._token = token.encode()
        self._allow = tuple(allow)
        self._exposition = make_asgi_app(REGISTRY)

    @property
    def enabled(self) -> bool:
        return bool(self._token or self._allow)

    async def __call__(self, scope: dict, receive, send) -> None:
        if scope["method"] not in ("GET", "HEAD"):
            await _error(send, 405, "method not allowed: use GET", [(b"allow", b"GET, HEAD")])
        elif not self.admits(scope):
            await _error(
                send,
                401,
                "metrics need Authorization: Bearer <DISPATCH_PROMETHEUS_TOKEN> or a direct "
                "connection from an address in DISPATCH_PROMETHEUS_ALLOW",
                [(b"www-authenticate", b'Bearer realm="metrics"')],
            )
        else:
            await self._exposition(scope, receive, send)

    def admits(self, scope: dict) -> bool:
        """Whether the request holds the token or comes straight from an allowed address."""
        headers = scope.get("headers") or ()
        if self._token and any(
            name == b"authorization"
            and value[:7].lower() == b"bearer "
            and hmac.compare_digest(value[7:].strip(), self._token)
            for name, value in headers
        ):
            return True
        if not self._allow or any(name in PROXY_HEADERS for name, _ in headers):
            return False
        client = scope.get("client")
        try:
            address = ipaddress.ip_address(client[0]) if client else None
        except ValueError:  # a Unix socket's peer has no address
            return False
        return address is not None and any(address in network for network in self._allow)


def with_metrics(app: ASGIApp, endpoint: MetricsEndpoint) -> ASGIApp:
    """``app``, with ``PATH`` answered by ``endpoint`` when it is enabled (else by ``app``:
    a 404, as for any unknown path)."""
    if not endpoint.enabled:
        return app

    async def route(scope: dict, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] == PATH:
            await endpoint(scope, receive, send)
        else:
            await app(scope, receive, send)

    return route


async def _error(send, status: int, message: str, headers: list[tuple[bytes, bytes]]) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})

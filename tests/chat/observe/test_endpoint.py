"""/-/metrics access: a bearer token, or a direct connection from an allowed address; off by
default. The guard is a plain ASGI app, driven here with ASGI scopes."""

from __future__ import annotations

import ipaddress
import json

from django.core.asgi import get_asgi_application

from chat import observe
from chat.observe.endpoint import PATH, MetricsEndpoint, with_metrics
from tests.chat.observe.asgi import request

TOKEN = "s3cret-token"


async def get(app, path: str = PATH, *, client=("127.0.0.1", 50000), headers=(), method="GET"):
    """One request through ``app``: (status, headers, body)."""
    response = await request(app, path, method=method, headers=headers, client=client)
    return response.status, response.headers, response.body


async def fallback(scope, receive, send):
    """Stands for the rest of the server: answers 404 to everything."""
    await send({"type": "http.response.start", "status": 404, "headers": []})
    await send({"type": "http.response.body", "body": b"fallback"})


def nets(*values: str):
    return [ipaddress.ip_network(v) for v in values]


async def test_the_token_admits_a_scraper_from_anywhere():
    app = with_metrics(fallback, MetricsEndpoint(token=TOKEN))
    bearer = [(b"authorization", f"Bearer {TOKEN}".encode())]

    status, headers, body = await get(app, headers=bearer, client=("203.0.113.9", 1))
    assert status == 200
    assert headers[b"content-type"].startswith(b"text/plain")
    assert b"dispatch_turns_started_total" in body
    # Through a proxy too: the token does not depend on the address.
    proxied = [*bearer, (b"x-forwarded-for", b"198.51.100.7")]
    assert (await get(app, headers=proxied))[0] == 200


async def test_a_missing_or_wrong_token_is_refused_with_401():
    app = with_metrics(fallback, MetricsEndpoint(token=TOKEN))
    for header in (
        [],
        [(b"authorization", b"Bearer nope")],
        [(b"authorization", TOKEN.encode())],  # not a bearer credential
        [(b"authorization", f"Basic {TOKEN}".encode())],
    ):
        status, headers, body = await get(app, headers=header)
        assert status == 401
        assert headers[b"www-authenticate"] == b'Bearer realm="metrics"'
        assert "DISPATCH_PROMETHEUS_TOKEN" in json.loads(body)["error"]


async def test_the_allow_list_admits_direct_connections_from_its_addresses_only():
    app = with_metrics(fallback, MetricsEndpoint(allow=nets("10.0.0.0/8", "::1/128")))

    assert (await get(app, client=("10.20.30.40", 1)))[0] == 200
    assert (await get(app, client=("::1", 1)))[0] == 200
    assert (await get(app, client=("192.168.1.1", 1)))[0] == 401
    assert (await get(app, client=None))[0] == 401  # no peer address (a Unix socket)
    # A proxy on an allowed address forwards anyone's request: never admitted by address.
    for header in (b"x-forwarded-for", b"forwarded", b"x-real-ip"):
        assert (await get(app, client=("10.0.0.2", 1), headers=[(header, b"1.2.3.4")]))[0] == 401


async def test_only_get_and_head_and_only_the_metrics_path():
    app = with_metrics(fallback, MetricsEndpoint(token=TOKEN))
    bearer = [(b"authorization", f"Bearer {TOKEN}".encode())]

    status, headers, body = await get(app, headers=bearer, method="POST")
    assert status == 405 and headers[b"allow"] == b"GET, HEAD"
    assert (await get(app, "/-/metrics/", headers=bearer))[2] == b"fallback"
    assert (await get(app, "/metrics", headers=bearer))[2] == b"fallback"


async def test_off_by_default_the_path_is_an_unknown_url(settings):
    settings.DISPATCH_PROMETHEUS_TOKEN = ""
    settings.DISPATCH_PROMETHEUS_ALLOW = []
    django_app = get_asgi_application()

    app = observe.http_app(django_app)

    assert app is django_app  # nothing in front: the path is Django's, which has no such URL
    assert (await get(app, client=("127.0.0.1", 1)))[0] == 404

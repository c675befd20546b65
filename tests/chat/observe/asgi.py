"""Drive an ASGI application with one HTTP request, as a server would."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass


@dataclass
class Response:
    status: int
    headers: dict[bytes, bytes]  # names lower-cased
    body: bytes


async def request(
    app,
    path: str,
    *,
    method: str = "GET",
    body: bytes = b"",
    headers: list[tuple[bytes, bytes]] | tuple = (),
    client: tuple[str, int] | None = ("127.0.0.1", 50000),
) -> Response:
    """Send one request through ``app`` and collect the whole response (a streamed one too).

    A ``host`` header ``127.0.0.1`` is added unless ``headers`` has one; the client stays
    connected until the response is complete.
    """
    head = list(headers)
    if not any(name == b"host" for name, _ in head):
        head.insert(0, (b"host", b"127.0.0.1"))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": head,
        "client": client,
        "server": ("127.0.0.1", 8000),
    }
    sent: list[dict] = []
    requested = False

    async def receive() -> dict:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # connected until the response is complete
        raise AssertionError("unreachable")

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = sent[0]
    return Response(
        start["status"],
        {name.lower(): value for name, value in start["headers"]},
        b"".join(message.get("body", b"") for message in sent[1:]),
    )

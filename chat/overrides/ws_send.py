"""Text frames written by the socket itself: Daphne's reply path, made cheap.

A consumer's ``send(text_data=…)`` goes through Channels' ``AsyncWebsocketConsumer.send`` and
``AsyncConsumer.send``, Daphne's ``Server.handle_reply`` (is the connection still there, are the
headers bytes), its ``WebSocketProtocol.handle_reply`` and ``serverSend`` (a debug log, the
encode), then Autobahn's ``sendMessage`` (type asserts, traffic counters, compression and
fragmentation settings), ``sendFrame`` (the header) and ``sendData`` (a debug log whose
arguments are formatted even when debug is off) to ``transport.write``: ~6 % of a streaming
worker's samples for a frame of ~100 bytes (docs/benchmarks.md). ``text_writer`` writes the
same bytes — one final, unmasked, uncompressed text frame (RFC 6455 §5.2) — for a message on an
open server connection that needs nothing else; any other case takes Daphne's path.

Written against daphne 4.2 (``Server.handle_reply``, ``WebSocketProtocol.handle_reply`` and
``serverSend``) and autobahn 26 (``sendMessage``, ``sendFrame``, ``sendData``), pinned by
tests/overrides/test_upstream.py. Nothing here imports Django.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from daphne.server import Server

TEXT_FINAL = b"\x81"  # FIN, opcode 1 (text)


def text_writer(send) -> Callable[[str], bool] | None:
    """For Daphne's ``send`` of one connection (``partial(server.handle_reply, protocol)``), a
    function that writes a text message as one frame and says whether it did; None for any
    other ``send`` (another server, a test's)."""
    if not (
        isinstance(send, functools.partial)
        and getattr(send.func, "__func__", None) is Server.handle_reply
        and len(send.args) == 1
        and not send.keywords
    ):
        return None
    server, protocol = send.func.__self__, send.args[0]  # type: ignore[attr-defined]
    connections = server.connections

    def write(text: str) -> bool:
        connection = connections.get(protocol)
        if connection is None or connection.get("disconnected"):
            return True  # gone: Daphne drops the reply too
        if not text or not _plain(protocol):
            return False
        payload = text.encode()
        size = len(payload)
        if 0 < protocol.maxMessagePayloadSize < size or 0 < protocol.autoFragmentSize < size:
            return False
        if size <= 125:
            header = TEXT_FINAL + size.to_bytes(1, "big")
        elif size <= 0xFFFF:
            header = TEXT_FINAL + b"\x7e" + size.to_bytes(2, "big")
        else:
            header = TEXT_FINAL + b"\x7f" + size.to_bytes(8, "big")
        protocol.transport.write(header + payload)
        return True

    return write


def _plain(protocol) -> bool:
    """The connection is open and sends frames as they are: no compression, no masking, no
    queued (chopped or synchronous) writes, no frame logging or timing."""
    return (
        protocol.state == protocol.STATE_OPEN
        and protocol._perMessageCompress is None
        and not protocol.send_queue
        and not protocol.maskServerFrames
        and not protocol.logFrames
        and not protocol.logOctets
        and not protocol.trackedTimings
    )

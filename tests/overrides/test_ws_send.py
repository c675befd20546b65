"""chat.overrides.ws_send: the text frames a consumer writes itself are the frames RFC 6455
describes (read back by the ``websockets`` library's own parser), and every case it does not
handle goes back to Daphne's path. tests/chat/test_ws.py sends such frames through a real
Daphne to a real client."""

from __future__ import annotations

import functools
from collections import deque

import pytest
from daphne.server import Server
from websockets.frames import OP_TEXT, Frame
from websockets.streams import StreamReader

from chat.overrides.ws_send import text_writer

OPEN, CONNECTING = 1, 0


class Transport:
    def __init__(self) -> None:
        self.written = bytearray()

    def write(self, data: bytes) -> None:
        self.written += data


class Protocol:
    """The fields of Daphne's WebSocketProtocol (an Autobahn protocol) that ws_send reads."""

    def __init__(self, **fields) -> None:
        self.__dict__.update(fields)


def connection(**protocol_fields):
    """A Daphne server with one connection: its ``send`` (as Daphne builds it), the protocol."""
    protocol = Protocol(
        STATE_OPEN=OPEN,
        state=OPEN,
        _perMessageCompress=None,
        send_queue=deque(),
        maskServerFrames=False,
        logFrames=False,
        logOctets=False,
        trackedTimings=None,
        maxMessagePayloadSize=1 << 20,  # Daphne's websocket_max_message_size default
        autoFragmentSize=0,
        transport=Transport(),
    )
    for name, value in protocol_fields.items():
        setattr(protocol, name, value)
    server = Server.__new__(Server)  # its __init__ wants endpoints to listen on
    server.connections = {protocol: {}}
    return functools.partial(server.handle_reply, protocol), server, protocol


def frames(data: bytes) -> list[Frame]:
    """``data`` parsed as server-to-client frames by the websockets library."""
    reader = StreamReader()
    reader.feed_data(data)
    parsed = []
    while reader.buffer:
        parser = Frame.parse(reader.read_exact, mask=False)
        try:
            next(parser)
        except StopIteration as done:
            parsed.append(done.value)
    return parsed


@pytest.mark.parametrize(
    "text",
    [
        "x",
        "y" * 125,  # the longest length in the first byte
        "z" * 126,  # two length bytes
        "é" * 40_000,  # 80,000 bytes of UTF-8: eight length bytes, counted in bytes
        '{"type":"chat.delta","event":{"type":"text-delta","delta":"🙂 hi"}}',
    ],
)
def test_a_text_message_is_one_final_unmasked_text_frame(text):
    send, _, protocol = connection()
    write = text_writer(send)
    assert write is not None
    assert write(text) is True
    [frame] = frames(bytes(protocol.transport.written))
    assert (frame.opcode, frame.fin, frame.rsv1, frame.rsv2, frame.rsv3) == (
        OP_TEXT, True, False, False, False,
    )  # fmt: skip
    assert frame.data.decode() == text


def test_frames_written_one_after_another_read_back_in_order():
    send, _, protocol = connection()
    write = text_writer(send)
    texts = [f"frame {n} " + "." * (n * 40) for n in range(8)]
    for text in texts:
        assert write(text)
    assert [f.data.decode() for f in frames(bytes(protocol.transport.written))] == texts


@pytest.mark.parametrize(
    "fields",
    [
        {"state": CONNECTING},  # Daphne accepts first
        {"_perMessageCompress": object()},  # compressed
        {"send_queue": deque([(b"x", True)])},  # Autobahn's queue must keep its order
        {"maskServerFrames": True},
        {"logFrames": True},
        {"logOctets": True},
        {"trackedTimings": object()},
        {"maxMessagePayloadSize": 10},  # too big: Autobahn raises
        {"autoFragmentSize": 10},  # fragmented
    ],
    ids=lambda fields: next(iter(fields)),
)
def test_anything_else_goes_back_to_daphnes_path(fields):
    send, _, protocol = connection(**fields)
    assert text_writer(send)("a message longer than ten bytes") is False
    assert protocol.transport.written == b""


def test_an_empty_text_goes_back_to_daphne_which_sends_nothing():
    send, _, protocol = connection()
    assert text_writer(send)("") is False


def test_a_closed_connection_drops_the_message_as_daphne_does():
    send, server, protocol = connection()
    write = text_writer(send)
    server.connections[protocol]["disconnected"] = True
    assert write("late") is True
    del server.connections[protocol]
    assert write("later") is True
    assert protocol.transport.written == b""


def test_only_daphnes_own_send_gets_a_writer():
    send, _, _ = connection()
    assert text_writer(send) is not None

    async def other_send(message):
        pass

    assert text_writer(other_send) is None
    assert text_writer(functools.partial(other_send)) is None

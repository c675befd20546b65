"""Run by tests/overrides/test_twisted_write.py (``python -m tests.overrides.twisted_write_server``):
a Twisted server on the asyncio reactor over uvloop, as Daphne runs in dispatch_site.serve,
with chat.overrides.twisted_write installed. To the one client it accepts it writes PIECES
pieces in one callback, then PIECES more, one per turn of the loop (every other piece with
``writeSequence``); it prints its port, then —
once everything is written to the transport — whether data was still waiting for the socket to
be writable (the client reads nothing until then). When the client says it has everything, it
answers "bye" (a sequence written on an idle connection); when the client says it has that
too, it closes."""

from __future__ import annotations

import asyncio

from twisted.internet import protocol

PIECES, SIZE = 32, 256 * 1024


def piece(index: int) -> bytes:
    return bytes([index % 251]) * SIZE


class Sender(protocol.Protocol):
    reactor = None  # the running one (main)

    def connectionMade(self) -> None:
        for index in range(PIECES):
            self.send(index)
        self.later(PIECES)

    def send(self, index: int) -> None:
        """A piece in one write, or (every other one) as a sequence, as HTTP bodies are."""
        data = piece(index)
        if index % 2:
            self.transport.writeSequence([data[: SIZE // 3], data[SIZE // 3 :]])
        else:
            self.transport.write(data)

    def later(self, index: int) -> None:
        if index < 2 * PIECES:
            self.send(index)
            self.reactor.callLater(0, self.later, index + 1)
            return
        waiting = self.transport in self.reactor._writers
        print("written", "waiting" if waiting else "sent", flush=True)

    def dataReceived(self, data: bytes) -> None:
        if data == b"done":  # the client has it all: answer; nothing else would send it
            self.transport.writeSequence([b"b", b"ye"])
        else:  # the client has the answer too
            self.transport.loseConnection()

    def connectionLost(self, reason) -> None:
        self.reactor.stop()


def main() -> None:
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    from twisted.internet import asyncioreactor

    asyncioreactor.install()
    from twisted.internet import reactor

    from chat.overrides import twisted_write

    assert twisted_write.install()
    Sender.reactor = reactor
    factory = protocol.ServerFactory()
    factory.protocol = Sender
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    print(port.getHost().port, flush=True)
    reactor.run()


if __name__ == "__main__":
    main()

"""Writes to a client's socket flushed at the end of the loop's turn, not after a round of
epoll: ``write`` of the connections Daphne accepts (``twisted.internet.tcp.Server``; Twisted 26,
``FileDescriptor.write``, ``writeSequence`` and ``doWrite``, the asyncio reactor's
``_readOrWrite``).

Twisted buffers each write, then asks the reactor to say when the socket can take it: an
``add_writer`` (epoll_ctl), a turn of the loop, the callback through ``callWithLogger``, the
send, a ``remove_writer`` (epoll_ctl) — for every WebSocket frame, and a streamed token is one
frame. A socket with room in its send buffer needs none of that. Here a write is buffered as
before and, unless the socket already waits to be writable, the loop is asked to flush the
buffer once the callbacks already queued have run (``call_soon``). So the frames written in
one turn of the loop still leave in one send, in order; what the kernel does not take waits
for writability the way Twisted does it (``startWriting``), and a send that fails ends the
connection the way the reactor does (its ``_readOrWrite``). docs/benchmarks.md, finding 17.
"""

from __future__ import annotations

from twisted.internet import abstract, tcp

_UPSTREAM = abstract.FileDescriptor.write
# tcp.Server's own (Twisted's ConnectionMixin): they pass a connection's writes through TLS
# after ``startTLS``, which Daphne never calls (its TLS endpoints wrap the protocol instead).
_CONNECTION_WRITE = tcp.Server.write
_CONNECTION_WRITE_SEQUENCE = tcp.Server.writeSequence


def write(self, data: bytes) -> None:
    """``FileDescriptor.write``, with the flush asked of the loop instead of epoll."""
    if self.TLS:
        return _CONNECTION_WRITE(self, data)
    abstract._dataMustBeBytes(data)
    if not self.connected or self._writeDisconnected or not data:
        return
    self._tempDataBuffer.append(data)
    self._tempDataLen += len(data)
    self._maybePauseProducer()
    _flush_later(self)


def write_sequence(self, iovec) -> None:
    """``FileDescriptor.writeSequence`` (HTTP's chunked bodies use it), flushed as ``write``."""
    if self.TLS:
        return _CONNECTION_WRITE_SEQUENCE(self, iovec)
    for data in iovec:
        abstract._dataMustBeBytes(data)
    if not self.connected or not iovec or self._writeDisconnected:
        return
    self._tempDataBuffer.extend(iovec)
    for data in iovec:
        self._tempDataLen += len(data)
    self._maybePauseProducer()
    _flush_later(self)


def _flush_later(connection) -> None:
    reactor = connection.reactor
    if connection._flush_soon or connection in reactor._writers:
        return  # a flush is due, or the socket waits to be writable: the data goes with it
    connection._flush_soon = True
    reactor._asyncioEventloop.call_soon(flush, connection)


def flush(connection) -> None:
    """Send what the connection buffered, as the reactor does when the socket is writable;
    what is left waits for writability."""
    connection._flush_soon = False
    reactor = connection.reactor
    if not connection.connected or connection in reactor._writers:
        return
    reactor._readOrWrite(connection, False)  # doWrite; a failure disconnects
    left = connection._tempDataLen or len(connection.dataBuffer) > connection.offset
    if connection.connected and left:
        connection.startWriting()


def install() -> bool:
    """Use it for every connection Daphne accepts, when the reactor runs on asyncio (it is
    Daphne's; the other reactors keep Twisted's own). Whether it was installed."""
    from twisted.internet import reactor
    from twisted.internet.asyncioreactor import AsyncioSelectorReactor

    if not isinstance(reactor, AsyncioSelectorReactor):
        return False
    tcp.Server._flush_soon = False  # type: ignore[attr-defined]
    tcp.Server.write = write  # type: ignore[method-assign]
    tcp.Server.writeSequence = write_sequence  # type: ignore[method-assign]
    return True

"""chat.overrides.twisted_write on a real Twisted server over uvloop: every byte arrives, in
order, when the client's socket is full and the writes must wait for writability (nothing
else would wake them: the server writes nothing more until the client has it all), a sequence
written on an idle connection is sent by its own flush, and a close comes after the last
write."""

from __future__ import annotations

import socket
import subprocess
import sys

from tests.overrides.twisted_write_server import PIECES, SIZE, piece
from tests.servers import REPO_ROOT, subprocess_env


def test_writes_that_do_not_fit_wait_for_the_socket_and_arrive_in_order_before_the_close():
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.overrides.twisted_write_server"],
        cwd=REPO_ROOT, env=subprocess_env(), stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        port = int(server.stdout.readline())
        with socket.create_connection(("127.0.0.1", port), timeout=60) as client:
            # Nothing is read until the server has written all 16 MiB to the transport: far
            # more than the kernel's buffers hold, so part of it waits for writability.
            assert server.stdout.readline().split() == ["written", "waiting"]
            received = bytearray()
            while len(received) < 2 * PIECES * SIZE and (chunk := client.recv(1 << 20)):
                received += chunk
            assert received == b"".join(piece(index) for index in range(2 * PIECES))
            client.sendall(b"done")
            answer = bytearray()
            while len(answer) < 3 and (chunk := client.recv(1 << 20)):
                answer += chunk
            assert answer == b"bye"
            client.sendall(b"close")
            assert client.recv(1 << 20) == b""  # then the close, and nothing after the answer
        assert server.wait(timeout=60) == 0
    finally:
        server.kill()

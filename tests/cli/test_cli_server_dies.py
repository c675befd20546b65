"""``dispatch chat`` when the server dies in the middle of a turn (a stack of its own)."""

from __future__ import annotations

import threading

import pytest

from tests.chat.live import COMPLETIONS, start_stack, wait_for
from tests.chat.providers.sse_server import Reply, openai_chunk


@pytest.fixture(scope="module")
def stack():
    yield from start_stack()


def test_a_server_dying_mid_turn_is_a_lost_connection_naming_the_conversation(
    stack, dispatch_background
):
    gate = threading.Event()
    stack.scripted.script(
        COMPLETIONS,
        Reply(events=[openai_chunk({"role": "assistant", "content": "Hello"}), gate]),
    )
    chat = dispatch_background("chat", "go", "-c", "dies-1")
    wait_for(lambda: chat.stdout == "Hello", "the first text to be printed")
    stack.workers[0].kill()
    assert chat.wait() == 1
    assert chat.stdout == "Hello\n"
    [line] = chat.stderr.splitlines()
    assert line.startswith(f"dispatch: lost the connection to {stack.url} (")
    assert line.endswith("); the turn may still be running: dispatch history dies-1")

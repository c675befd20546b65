"""Subprocess worker for tests/chat/test_log.py: concurrent writers to one conversation's log.

Run from the repository root as
``python -m tests.chat.log_writer CONVERSATION WRITER THREADS CALLS``, with the database chosen
by the environment (DISPATCH_SQLITE_PATH or DATABASE_URL). It ensures the conversation exists,
starts THREADS writers named ``WRITER.<n>`` each connected to the database, prints ``ready``
and waits for a line on stdin; then every writer makes CALLS ``chunks_append`` calls of one to
three multi-chunk messages. Prints, as JSON, every writer's calls: the messages it appended and
the StoredChunks it got back.
"""

from __future__ import annotations

import json
import random
import sys
import threading

import django


def _messages_for(writer: str, call: int) -> list[dict]:
    """Deterministic multi-chunk messages; every chunk text names its writer, call and place."""
    rng = random.Random(f"{writer}/{call}")
    messages = []
    for m in range(rng.randint(1, 3)):
        role = rng.choice(["user", "assistant", "tool"])
        chunks = [
            {"type": "text", "text": f"{writer}|{call}|{m}|{c}"} for c in range(rng.randint(1, 4))
        ]
        messages.append({"role": role, "chunks": chunks})
    return messages


def _write(conversation_id: str, writer: str, calls: int, connected, go, out: dict) -> None:
    from django.db import connection

    from chat.runtime import Message
    from chat.services._log import chunks_append

    done: list[dict] = []
    try:
        connection.ensure_connection()
        connected.wait(timeout=60)
        go.wait()
        for call in range(calls):
            messages = _messages_for(writer, call)
            stored = chunks_append(
                conversation_id=conversation_id,
                messages=[Message(m["role"], m["chunks"]) for m in messages],
                turn_id=f"turn-{writer}-{call}",
            )
            done.append({"call": call, "messages": messages, "stored": stored})
    except BaseException:
        connected.abort()  # the other writers and the main thread stop waiting for this one
        raise
    finally:
        out[writer] = done
        connection.close()


def write(conversation_id: str, writer: str, threads: int, calls: int) -> None:
    from django.contrib.auth import get_user_model

    from chat.services._log import conversation_ensure

    owner, _ = get_user_model().objects.get_or_create(username="log-writer")
    conversation_ensure(user=owner, conversation_id=conversation_id)
    connected = threading.Barrier(threads + 1)
    go = threading.Event()
    out: dict = {}
    workers = [
        threading.Thread(
            target=_write,
            args=(conversation_id, f"{writer}.{n}", calls, connected, go, out),
            daemon=True,  # a broken start must not leave the process waiting on them
        )
        for n in range(threads)
    ]
    for worker in workers:
        worker.start()
    connected.wait(timeout=60)
    print("ready", flush=True)
    sys.stdin.readline()
    go.set()
    for worker in workers:
        worker.join()
    if failed := sorted(name for name, calls_done in out.items() if len(calls_done) < calls):
        sys.exit(f"writers failed (tracebacks above): {failed}")
    print(json.dumps(out))


if __name__ == "__main__":
    django.setup()
    conversation, writer, threads, calls = sys.argv[1:]
    write(conversation, writer, int(threads), int(calls))

"""Storage outages never leave a turn stuck (docs/protocol.md#46-sealing).

A real fault: the worker's PostgreSQL database is switched to read-only in the middle of
turns (``default_transaction_read_only``; the worker opens a connection per request, so the
next write is refused) for longer than any fixed retry schedule would wait. While it lasts,
``/health`` says the database is unwritable, errors name the fault without SQL, stop and close
end the turns' streams; once it is writable again the pending seals commit, subscribers hear
``turn-sealed`` and the conversation goes on.
"""

from __future__ import annotations

import uuid

import httpx
import psycopg
import pytest

from tests.chat.live import COMPLETIONS, start_stack, wait_for
from tests.chat.providers.sse_server import openai_text_reply
from tests.chat.test_api_chat import gated_reply, history, sealed_turns
from tests.chat.test_ws import Socket
from tests.reliability.helpers import Stream
from tests.reliability.test_faults import assert_ended, send, until_event

READ_ONLY = "the database is read-only"
# The seal's attempts before this change gave up: 0.2 … 30 s apart, eight in all.
OLD_SCHEDULE_ATTEMPTS = 8


@pytest.fixture(scope="module")
def database(postgres_server):
    name = f"outage_{uuid.uuid4().hex[:8]}"
    return name, postgres_server.database_create(name)


@pytest.fixture(scope="module")
def stack(database):
    yield from start_stack({"DATABASE_URL": database[1]})


class ReadOnly:
    """Switch one database of the cluster to read-only for new transactions, and back."""

    def __init__(self, postgres_server, name: str):
        self.admin, self.name = postgres_server.url, name

    def _set(self, sql: str) -> None:
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(sql)

    def __enter__(self):
        self._set(f'ALTER DATABASE "{self.name}" SET default_transaction_read_only = on')
        return self

    def __exit__(self, *exc) -> None:
        self._set(f'ALTER DATABASE "{self.name}" RESET default_transaction_read_only')


def health(stack) -> httpx.Response:
    return httpx.get(stack.url + "/health", timeout=30)


def test_a_read_only_database_never_leaves_a_turn_stuck(stack, database, postgres_server, gates):
    stopped_id, closed_id = "so-" + uuid.uuid4().hex[:10], "sc-" + uuid.uuid4().hex[:10]
    first, second = gates(), gates()
    stack.scripted.script(COMPLETIONS, gated_reply(first), gated_reply(second))
    with stack.client() as client, Socket(stack.ws_url()) as watcher:
        for cid in (stopped_id, closed_id):
            watcher.send({"type": "chat.subscribe", "conversationId": cid})
        stopped = Stream(stack.url, stack.headers(), stopped_id, "one")
        wait_for(lambda: stopped.saw("text-delta"), "the first turn to stream")
        closed = Stream(stack.url, stack.headers(), closed_id, "two")
        wait_for(lambda: closed.saw("text-delta"), "the second turn to stream")

        with ReadOnly(postgres_server, database[0]):
            # The health check writes, so it sees what a SELECT 1 would not.
            report = wait_for(
                lambda: (r := health(stack)).status_code == 503 and r.json(), "health to fail"
            )
            assert report["database"] == f"error: {READ_ONLY}"
            assert report["ok"] is False and report["runningTurns"] == 2

            first.set()  # the first turn's step cannot be stored: it fails, then cannot seal
            wait_for(lambda: stopped.saw("done"), "the first turn to end")
            error = next(e for e in stopped.events if e["type"] == "error")
            assert error["message"] == f"turn failed: {READ_ONLY}"
            assert stopped.events[-1]["reason"] == "error"
            # The seal is retried past any fixed schedule, and the stream waits for it.
            failed = f"turn {stopped.events[0]['turnId']}: sealing failed"
            wait_for(
                lambda: stack.workers[0].log.read_text().count(failed) > OLD_SCHEDULE_ATTEMPTS,
                "more seal attempts than the old schedule made",
                deadline=90,
            )
            assert not stopped.ended.is_set() and not stopped.saw("turn-sealed")

            # New work is refused with the same words; a second send here is a conflict.
            new_turn = client.post("/chat", json={"message": "hi"})
            assert new_turn.status_code == 503
            assert new_turn.json() == {"error": READ_ONLY}
            again = client.post("/chat", json={"conversationId": stopped_id, "message": "x"})
            assert again.status_code == 409

            # Stop ends the turn for its client: the NDJSON ends after done.
            answer = client.post(f"/conversations/{stopped_id}/stop")
            assert answer.json() == {"conversationId": stopped_id, "abortedTurn": True}
            assert stopped.ended.wait(30), "the NDJSON stream did not end after stop"
            assert stopped.types()[-1] == "done"

            # Close cannot store ``closed`` now, but still stops the turn and ends its stream.
            refused = client.post(f"/conversations/{closed_id}/close")
            assert refused.status_code == 503 and refused.json() == {"error": READ_ONLY}
            assert closed.ended.wait(30), "the NDJSON stream did not end after close"
            assert closed.types()[-1] == "done" and closed.events[-1]["reason"] == "aborted"
            assert "turn-sealed" not in stopped.types() + closed.types()

        # Writable again: the pending seals commit and are announced to subscribers.
        sealed = {}
        while len(sealed) < 2:
            frame = watcher.recv()
            event = frame.get("event", {})
            if event.get("type") == "turn-sealed":
                sealed[event["conversationId"]] = event["turnId"]
        assert sealed == {
            stopped_id: stopped.events[0]["turnId"],
            closed_id: closed.events[0]["turnId"],
        }
        assert health(stack).status_code == 200
        assert [t["finishReason"] for t in sealed_turns(client, stopped_id)] == ["error"]
        assert [t["finishReason"] for t in sealed_turns(client, closed_id)] == ["aborted"]
        # Only what was committed before the fault: the user messages.
        assert [c["chunk"] for c in history(client, stopped_id)["chunks"]] == [
            {"type": "text", "text": "one"}
        ]
        # The conversation goes on.
        stack.scripted.script(COMPLETIONS, openai_text_reply("back again"))
        send(watcher, stopped_id, "three")
        events = until_event(watcher, "turn-sealed")
        events = [e for e in events if e["conversationId"] == stopped_id]
        assert_ended(events, "stop")
        assert history(client, stopped_id)["latestSeq"] == 3

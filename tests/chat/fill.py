"""Long conversations made fast: sealed turns of a prompt and an answer, bulk-inserted.

Used by the window tests, the browser test that scrolls 5,000 chunks and the benchmark of
``GET /c/<id>`` (1,000,000 chunks). The rows are what real turns leave: a numbered sealed Turn,
its TurnMetrics, and per turn a user chunk and an assistant chunk (2 chunks, 2 messages), so
turn ``n`` (1-based) holds seqs ``2n-1`` and ``2n``.

``python -m tests.chat.fill <user> <conversation id> <turns> [<text> <model>]`` fills one in
the database the environment names (DATABASE_URL, DISPATCH_VAR_DIR), creating the user if
needed.
"""

from __future__ import annotations

import json
import sys

import django

BATCH = 20_000


def _insert(model, rows: list[dict]) -> None:
    """Insert ``rows`` (every column named by attname) with one executemany: the ORM's
    bulk_create builds an instance per row, a minute per million rows. Values are given as
    the database takes them (JSON and times prepared by the caller)."""
    from django.db import connection

    fields = [f for f in model._meta.concrete_fields if f.attname in rows[0]]
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    marks = ", ".join(["%s"] * len(fields))
    sql = f"INSERT INTO {connection.ops.quote_name(model._meta.db_table)} ({columns}) VALUES ({marks})"
    with connection.cursor() as cursor:
        cursor.executemany(sql, [[row[f.attname] for f in fields] for row in rows])


def _json(value):
    """A JSON column's value as the database driver takes it."""
    from django.db import connection

    if connection.vendor == "postgresql":
        from psycopg.types.json import Jsonb

        return Jsonb(value)
    return json.dumps(value)


def conversation_fill(
    *, owner, conversation_id: str, turns: int, text: int = 60, model: str = "scripted/test-model"
) -> int:
    """Create the conversation with ``turns`` sealed turns (answered by ``model``, each chunk
    about ``text`` characters); the number of chunks."""
    from django.db import connection, transaction
    from django.utils import timezone

    from chat.models import Chunk, Conversation, Turn
    from metrics.models import TurnMetrics

    now = Chunk._meta.get_field("created_at").get_db_prep_save(timezone.now(), connection)
    per_chunk = (text + 12) // 4  # about what a model counts: four characters a token
    with transaction.atomic():
        Conversation.objects.create(
            id=conversation_id,
            owner=owner,
            title=f"{turns} turns",
            model=model,
            last_seq=2 * turns,
            last_message_ordinal=2 * turns,
            last_turn_number=turns,
        )
        for low in range(1, turns + 1, BATCH):
            numbers = range(low, min(low + BATCH, turns + 1))
            ids = {n: f"turn-{conversation_id}-{n:07d}" for n in numbers}
            _insert(Turn, [
                {"id": ids[n], "conversation_id": conversation_id, "status": Turn.Status.SEALED,
                 "kind": Turn.Kind.TURN, "number": n, "started_at": now, "ended_at": now,
                 "finish_reason": "stop", "model": model, "worker": "", "heartbeat_at": None}
                for n in numbers
            ])  # fmt: skip
            _insert(TurnMetrics, [
                {"turn_id": ids[n], "conversation_id": conversation_id, "model": model,
                 "finish_reason": "stop", "input_tokens": (2 * n - 1) * per_chunk,
                 "output_tokens": per_chunk, "cache_read_tokens": None, "cache_write_tokens": None,
                 "duration_ms": 100.0, "context_size": 2 * n * per_chunk, "gen_total_ms": 90.0,
                 "decode_ms": 80.0, "generation_ms": 80.0, "ttft_ms": 10.0, "created_at": now,
                 "output_tokens_estimated": False, "copied": False}
                for n in numbers
            ])  # fmt: skip
            _insert(Chunk, [
                {"conversation_id": conversation_id, "seq": seq, "message": seq,
                 "role": "user" if seq % 2 else "assistant", "type": "text",
                 "payload": _json({"type": "text", "text": f"chunk {seq} " + "x" * text}),
                 "turn_id": ids[n], "step_id": "", "created_at": now}
                for n in numbers
                for seq in (2 * n - 1, 2 * n)
            ])  # fmt: skip
    return 2 * turns


def main() -> None:
    username, conversation_id, turns = sys.argv[1], sys.argv[2], int(sys.argv[3])
    text = int(sys.argv[4]) if len(sys.argv) > 4 else 60
    model = sys.argv[5] if len(sys.argv) > 5 else "scripted/test-model"
    django.setup()
    from django.contrib.auth.models import User

    owner, _ = User.objects.get_or_create(username=username)
    print(
        conversation_fill(
            owner=owner, conversation_id=conversation_id, turns=turns, text=text, model=model
        )
    )


if __name__ == "__main__":
    import os

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dispatch_site.settings")
    main()

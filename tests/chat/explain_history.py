"""Subprocess worker for tests/chat/test_history.py: the PostgreSQL plans of tail reads.

Run from the repository root as ``python -m tests.chat.explain_history`` with DATABASE_URL set
to a migrated PostgreSQL database. It fills many conversations, ANALYZEs, runs
``history_slice`` for each window of ``TAIL_WINDOWS`` and prints, as JSON, the
``EXPLAIN (FORMAT JSON)`` plan of the exact SQL each read issued.
"""

from __future__ import annotations

import json

import django

CONVERSATIONS = 20
CHUNKS_EACH = 300
READ_FROM = "explain-7"
# name → (sinceSeq, beforeSeq, limit)
TAIL_WINDOWS = {
    "tail": (0, None, 20),
    "tail-before": (0, 200, 20),
    "tail-since": (100, None, 20),
}


def main() -> None:
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from chat.models import Chunk, Conversation
    from chat.selectors import HistoryWindow, history_slice

    owner, _ = get_user_model().objects.get_or_create(username="explain")
    conversations = Conversation.objects.bulk_create(
        [Conversation(id=f"explain-{n}", owner=owner) for n in range(CONVERSATIONS)]
    )
    Chunk.objects.bulk_create(
        [
            Chunk(
                conversation=conversation,
                seq=seq,
                message=seq,
                role="assistant",
                type="text",
                payload={"type": "text", "text": f"chunk {seq}"},
            )
            for conversation in conversations
            for seq in range(1, CHUNKS_EACH + 1)
        ],
        batch_size=5000,
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE chat_chunk")

    plans = {}
    for name, (since, before, limit) in TAIL_WINDOWS.items():
        window = HistoryWindow(since_seq=since, before_seq=before, limit=limit)
        with CaptureQueriesContext(connection) as queries:
            history_slice(conversation_id=READ_FROM, window=window)
        (query,) = queries.captured_queries
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (FORMAT JSON) " + query["sql"])
            plans[name] = cursor.fetchone()[0]
    print(json.dumps(plans))


if __name__ == "__main__":
    django.setup()
    main()

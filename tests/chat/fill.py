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

import datetime as dt
import sys

import django

BATCH = 5000


def conversation_fill(
    *, owner, conversation_id: str, turns: int, text: int = 60, model: str = "scripted/test-model"
) -> int:
    """Create the conversation with ``turns`` sealed turns (answered by ``model``, each chunk
    about ``text`` characters); the number of chunks."""
    from django.db import transaction
    from django.utils import timezone

    from chat.models import Chunk, Conversation, Turn
    from metrics.models import TurnMetrics

    started = timezone.now() - dt.timedelta(days=1)
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
            Turn.objects.bulk_create(
                Turn(
                    id=ids[n],
                    conversation_id=conversation_id,
                    status=Turn.Status.SEALED,
                    number=n,
                    model=model,
                    finish_reason="stop",
                )
                for n in numbers
            )
            TurnMetrics.objects.bulk_create(
                TurnMetrics(
                    turn_id=ids[n],
                    conversation_id=conversation_id,
                    model=model,
                    finish_reason="stop",
                    # About what a model counts: four characters a token, all chunks so far.
                    input_tokens=(2 * n - 1) * (text + 12) // 4,
                    output_tokens=(text + 12) // 4,
                    duration_ms=100.0,
                    context_size=2 * n * (text + 12) // 4,
                    created_at=started + dt.timedelta(milliseconds=n),
                )
                for n in numbers
            )
            Chunk.objects.bulk_create(
                Chunk(
                    conversation_id=conversation_id,
                    seq=seq,
                    message=seq,
                    role="user" if seq % 2 else "assistant",
                    type="text",
                    payload={"type": "text", "text": f"chunk {seq} " + "x" * text},
                    turn_id=ids[n],
                )
                for n in numbers
                for seq in (2 * n - 1, 2 * n)
            )
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

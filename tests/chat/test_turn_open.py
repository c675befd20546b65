"""A turn's opening transaction reads the conversation's row once when it creates the
conversation, and twice when the conversation has turns already (the row with its owner,
then locked with its counters): nothing it already holds is read again (docs/benchmarks.md,
finding 24)."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test.utils import CaptureQueriesContext

from chat.models import Chunk, Conversation, Turn
from chat.providers import get_catalog
from chat.runtime import TurnMetrics, Usage
from chat.services import turns
from chat.services.events import _collect

pytestmark = pytest.mark.django_db


def _open(user, resolved, turn_id: str) -> list[str]:
    """Open a turn in conversation "c1"; the statements that read the conversation's row."""
    request = turns._TurnRequest(conversation_id="c1", message=f"hello from {turn_id}")
    with CaptureQueriesContext(connection) as queries:
        _collect(
            turns._turn_open,
            {"user": user, "request": request, "resolved": resolved, "turn_id": turn_id,
             "worker": "w"},
        )  # fmt: skip
    return [
        q["sql"]
        for q in queries
        if q["sql"].startswith("SELECT") and "chat_conversation" in q["sql"]
    ]


def test_the_opening_transaction_reads_the_conversation_once_per_row_state(user):
    catalog = get_catalog()
    resolved = async_to_sync(catalog.resolve)(catalog.default_model)

    assert len(_open(user, resolved, "turn-1-aaaaaa")) == 1  # created here: nothing to read
    metrics = TurnMetrics(turn_id="turn-1-aaaaaa", finish_reason="stop", usage=Usage(1, 1),
                          model=resolved.name, duration_ms=1.0)  # fmt: skip
    _collect(turns._turn_close, {"turn_id": "turn-1-aaaaaa", "metrics": metrics})
    assert len(_open(user, resolved, "turn-2-bbbbbb")) == 2  # the row, then its counters locked

    conversation = Conversation.objects.get(pk="c1")
    assert (conversation.last_seq, conversation.last_message_ordinal) == (2, 2)
    assert (conversation.last_turn_number, conversation.status) == (2, "active")
    assert list(Chunk.objects.filter(conversation_id="c1").values_list("seq", "turn_id")) == [
        (1, "turn-1-aaaaaa"),
        (2, "turn-2-bbbbbb"),
    ]
    assert list(Turn.objects.order_by("number").values_list("number", "status")) == [
        (1, "sealed"),
        (2, "running"),
    ]

"""conversation_turn_metrics: what turn_seal recorded reads back exactly (docs/protocol.md#2-chunks-and-the-log)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from metrics.selectors import conversation_turn_metrics
from tests.metrics.conftest import turn_metrics

pytestmark = pytest.mark.django_db

FULL = {
    "model": "openai/gpt-4o/mini",
    "usage": {
        "inputTokens": 3000,
        "outputTokens": 420,
        "cacheReadTokens": 2048,
        "cacheWriteTokens": 12,
    },
    "durationMs": 12345.678,
    "contextSize": 2420,
    "finishReason": "stop",
    "steps": [
        {
            "usage": {"inputTokens": 1000, "outputTokens": 20, "cacheReadTokens": 1024},
            "ttftMs": 850.5,
            "genTotalMs": 1000.25,
        },
        {
            "usage": {
                "inputTokens": 2000,
                "outputTokens": 400,
                "cacheReadTokens": 1024,
                "cacheWriteTokens": 12,
            },
            "ttftMs": 100.0,
            "decodeMs": 9000.125,
            "genTotalMs": 9100.125,
        },
    ],
}
MINIMAL = {
    "usage": {"inputTokens": 0, "outputTokens": 0},
    "finishReason": "error",
    "steps": [],
}


def _sent(turn_id: str, metrics: dict) -> dict:
    """The dict the runtime handed to turn_seal (ids filled in the way seal() does)."""
    return {
        **metrics,
        "turnId": turn_id,
        "steps": [{**s, "stepId": f"{turn_id}#{i}"} for i, s in enumerate(metrics["steps"])],
    }


def test_round_trip_every_field_and_no_extra_keys(sealed):
    first = sealed(FULL)
    second = sealed(MINIMAL)
    third = sealed(turn_metrics(output_tokens=7))

    turns = [t.to_wire() for t in conversation_turn_metrics(conversation_id="conv-1")]

    assert turns == [
        _sent(first, FULL),
        _sent(second, MINIMAL),
        _sent(third, turn_metrics(output_tokens=7)),
    ]
    assert "model" not in turns[1] and "durationMs" not in turns[1]
    assert "cacheReadTokens" not in turns[2]["usage"]


def test_only_the_conversations_own_turns(sealed, other_user):
    mine = sealed(turn_metrics(), conversation_id="conv-a")
    sealed(turn_metrics(), conversation_id="conv-b")
    sealed(turn_metrics(), conversation_id="conv-c", owner=other_user)
    assert [t.turn_id for t in conversation_turn_metrics(conversation_id="conv-a")] == [mine]
    assert conversation_turn_metrics(conversation_id="unknown") == []


def test_constant_number_of_queries(sealed):
    for _ in range(3):
        sealed(FULL)
    with CaptureQueriesContext(connection) as few:
        conversation_turn_metrics(conversation_id="conv-1")
    for _ in range(10):
        sealed(FULL)
    with CaptureQueriesContext(connection) as many:
        assert len(conversation_turn_metrics(conversation_id="conv-1")) == 13
    assert len(few) == len(many) == 2


def test_a_turn_sealed_between_the_two_queries_is_left_for_the_next_read(sealed):
    """A turn sealing while the metrics are read (the API polled mid-seal) must not fail the read:
    its steps may appear in the second query though its turn row was not in the first."""
    first = sealed(turn_metrics())
    late: list[str] = []

    def seal_before_the_step_query(execute, sql, params, many, context):
        if not late and sql.lstrip().startswith("SELECT") and "metrics_stepmetrics" in sql:
            late.append(sealed(turn_metrics()))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(seal_before_the_step_query):
        turns = conversation_turn_metrics(conversation_id="conv-1")

    assert late, "the wrapper sealed a turn between the queries"
    assert [t.turn_id for t in turns] == [first]
    assert [len(t.steps) for t in turns] == [1]
    assert [t.turn_id for t in conversation_turn_metrics(conversation_id="conv-1")] == [
        first,
        late[0],
    ]

"""The metrics page over 100,000 turns: aggregation stays in SQL, queries stay constant."""

import datetime as dt

import pytest
from django.db import connection
from django.test import Client

from chat.models import Conversation, Turn
from metrics.models import TurnMetrics

pytestmark = pytest.mark.django_db
ROWS = 100_000
MODELS = ("local/qwen", "openai/gpt-4o", "anthropic/claude", "local/llama")
MARCH = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


def _insert(model, rows: list[dict]) -> None:
    """Insert many rows in one executemany, bypassing the ORM's per-field preparation.

    ``bulk_create`` spends ~20 s of Python on 200,000 objects here; this takes ~2 s. Columns
    a row leaves out get the field's default. Values must already be database values.
    """
    fields = [f for f in model._meta.concrete_fields if not f.primary_key or f.name in rows[0]]
    defaults = {f.attname: f.get_default() for f in fields}
    columns = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    marks = ", ".join(["%s"] * len(fields))
    with connection.cursor() as cursor:
        cursor.executemany(
            f"INSERT INTO {model._meta.db_table} ({columns}) VALUES ({marks})",
            [tuple(row.get(f.attname, defaults[f.attname]) for f in fields) for row in rows],
        )


@pytest.fixture
def hundred_thousand_turns(user, other_user):
    """100k sealed turns spread over March 2026 (every 10th someone else's), four models."""
    Conversation.objects.create(id="mine", owner=user)
    Conversation.objects.create(id="theirs", owner=other_user)
    step = dt.timedelta(days=31) / ROWS
    adapt = connection.ops.adapt_datetimefield_value
    stamps = [adapt(MARCH + step * n) for n in range(ROWS)]
    _insert(
        Turn,
        [
            {
                "id": f"turn-{n}-abcdef",
                "conversation_id": "theirs" if n % 10 == 0 else "mine",
                "status": "sealed",
                "started_at": stamps[n],
            }
            for n in range(ROWS)
        ],
    )
    _insert(
        TurnMetrics,
        [
            {
                "turn_id": f"turn-{n}-abcdef",
                "conversation_id": "theirs" if n % 10 == 0 else "mine",
                "model": MODELS[n % len(MODELS)],
                "finish_reason": "stop",
                "input_tokens": 1000 + n % 500,
                "output_tokens": 100 + n % 300,
                "duration_ms": 2000.0 + n % 1000,
                "gen_total_ms": 1500.0,
                "decode_ms": 1400.0,
                "generation_ms": 1400.0 + n % 700,
                "ttft_ms": 100.0 + n % 50,
                "created_at": stamps[n],
            }
            for n in range(ROWS)
        ],
    )
    assert TurnMetrics.objects.count() == ROWS


def test_month_page_over_100k_turns_uses_a_bounded_number_of_queries(
    hundred_thousand_turns, user, django_assert_max_num_queries
):
    client = Client()
    client.force_login(user)
    # session + user, the user's theme, throughput, chart buckets, turn count, one page of turns.
    with django_assert_max_num_queries(7):
        response = client.get("/metrics/", {"period": "month", "date": "2026-03"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "90,000 turns" in html
    assert "page 1 of 1800" in html
    for model in MODELS:
        assert f'<td data-label="model">{model}</td>' in html
    assert html.count(' role="img"') == 2  # the two charts (legend swatches are svg too)
    assert html.count("<circle ") == 2 * len(MODELS) * 31  # every model on every day

    with django_assert_max_num_queries(7):
        assert client.get("/metrics/", {"period": "day", "date": "2026-03-31"}).status_code == 200
    with django_assert_max_num_queries(3):
        body = client.get("/metrics/throughput", {"period": "month", "date": "2026-03"}).json()
    assert sum(m["turns"] for m in body["models"]) == 90_000

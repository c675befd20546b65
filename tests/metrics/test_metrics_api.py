"""GET /conversations/{id}/metrics and GET /metrics/throughput through the real URLconf."""

import datetime as dt

import pytest
from django.test import Client

from metrics.selectors import conversation_turn_metrics
from tests.metrics.conftest import turn_metrics

pytestmark = pytest.mark.django_db


@pytest.fixture
def client_for(user):
    client = Client()
    client.force_login(user)
    return client


def test_conversation_metrics_returns_every_sealed_turn(client_for, sealed):
    sealed(turn_metrics(output_tokens=10))
    sealed(turn_metrics(output_tokens=20, contextSize=70))
    response = client_for.get("/conversations/conv-1/metrics")
    assert response.status_code == 200
    body = response.json()
    assert body == {
        "turns": [t.to_wire() for t in conversation_turn_metrics(conversation_id="conv-1")]
    }
    assert [t["usage"]["outputTokens"] for t in body["turns"]] == [10, 20]
    assert body["turns"][1]["contextSize"] == 70
    assert "contextSize" not in body["turns"][0]  # absent, not null


def test_conversation_metrics_keys_are_in_spec_order_and_absent_rather_than_null(
    client_for, sealed
):
    sealed(turn_metrics(contextSize=70))
    sealed({"usage": {"inputTokens": 0, "outputTokens": 0}, "finishReason": "error", "steps": []})

    full, minimal = client_for.get("/conversations/conv-1/metrics").json()["turns"]

    assert list(full) == [
        "turnId",
        "model",
        "usage",
        "durationMs",
        "contextSize",
        "finishReason",
        "steps",
    ]
    assert list(full["steps"][0]) == ["stepId", "usage", "ttftMs", "decodeMs", "genTotalMs"]
    assert list(minimal) == ["turnId", "usage", "finishReason", "steps"]


def test_unknown_conversation_reads_as_empty(client_for):
    response = client_for.get("/conversations/never-seen/metrics")
    assert (response.status_code, response.json()) == (200, {"turns": []})


def test_someone_elses_conversation_is_404(client_for, sealed, other_user):
    sealed(turn_metrics(), owner=other_user, conversation_id="theirs")
    response = client_for.get("/conversations/theirs/metrics")
    assert response.status_code == 404
    assert "error" in response.json()


@pytest.mark.parametrize("bad", ["-starts-with-dash", "has space", "x" * 129, "a!b"])
def test_invalid_conversation_id_is_400(client_for, bad):
    response = client_for.get(f"/conversations/{bad}/metrics")
    assert response.status_code == 400
    assert response.json()["error"].startswith("conversationId: must be 1 to 128")


def test_bearer_token_works_and_anonymous_is_refused(api, sealed):
    sealed(turn_metrics())
    assert len(api.get("/conversations/conv-1/metrics").json()["turns"]) == 1
    assert Client().get("/conversations/conv-1/metrics").status_code == 401
    assert Client().get("/metrics/throughput").status_code == 401


def test_throughput(client_for, sealed):
    sealed(
        turn_metrics(output_tokens=300, decode_ms=2000), at=dt.datetime(2026, 3, 10, tzinfo=dt.UTC)
    )
    response = client_for.get("/metrics/throughput", {"period": "month", "date": "2026-03"})
    assert response.status_code == 200
    assert response.json() == {
        "period": "month",
        "date": "2026-03",
        "start": "2026-03-01T00:00:00+00:00",
        "end": "2026-04-01T00:00:00+00:00",
        "models": [
            {
                "model": "local/qwen",
                "tokensPerSecond": 150.0,
                "totalOutputTokens": 300,
                "totalGenMs": 2000.0,
                "turns": 1,
            }
        ],
    }


def test_throughput_defaults_to_today(client_for):
    body = client_for.get("/metrics/throughput").json()
    assert (body["period"], body["models"]) == ("day", [])
    assert body["date"] == dt.datetime.now(dt.UTC).date().isoformat()


@pytest.mark.parametrize(
    "params", [{"period": "year"}, {"period": "day", "date": "2026-3-1"}, {"date": "nope"}]
)
def test_throughput_invalid_query_is_400(client_for, params):
    response = client_for.get("/metrics/throughput", params)
    assert response.status_code == 400
    assert response.json()["error"]

"""Helpers for metrics tests: sealed turns made through chat.services, as the runtime does."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from chat.runtime import TurnMetrics as TurnMetricsData
from chat.services import _log
from metrics.models import TurnMetrics

_counter = itertools.count(1)


def turn_metrics(
    *, model: str = "local/qwen", output_tokens: int = 100, decode_ms: float = 1000.0, **extra
) -> dict:
    """A one-step TurnMetrics dict (docs/protocol.md#2-chunks-and-the-log) with the given throughput; ``turnId`` set on seal."""
    step = {
        "usage": {"inputTokens": 50, "outputTokens": output_tokens},
        "ttftMs": 120.0,
        "decodeMs": decode_ms,
        "genTotalMs": decode_ms + 120.0,
    }
    return {
        "model": model,
        "usage": dict(step["usage"]),
        "durationMs": decode_ms + 200.0,
        "finishReason": "stop",
        "steps": [step],
        **extra,
    }


def seal(*, user, metrics: dict, conversation_id: str = "conv-1", at: dt.datetime | None = None):
    """Run a turn's lifecycle (ensure → begin → seal); stamp its metrics ``at`` a given time.

    Returns the turn id. ``metrics`` gets its ``turnId`` and step ids filled in.
    """
    turn_id = f"turn-{1_700_000_000_000 + next(_counter)}-abc123"
    metrics = {**metrics, "turnId": turn_id}
    metrics["steps"] = [
        {**step, "stepId": f"{turn_id}#{index}"} for index, step in enumerate(metrics["steps"])
    ]
    _log.conversation_ensure(user=user, conversation_id=conversation_id)
    _log.turn_begin(
        conversation_id=conversation_id, turn_id=turn_id, model=metrics.get("model", ""), worker="w"
    )
    _log.turn_seal(turn_id=turn_id, metrics=TurnMetricsData.from_wire(metrics))
    if at is not None:
        # created_at is auto_now_add: only an update can place a row in the past.
        TurnMetrics.objects.filter(turn_id=turn_id).update(created_at=at)
    return turn_id


@pytest.fixture
def sealed(user):
    """``sealed(metrics, at=..., conversation_id=..., owner=...)`` → turn id."""

    def make(metrics: dict, *, owner=None, **kwargs):
        return seal(user=owner or user, metrics=metrics, **kwargs)

    return make

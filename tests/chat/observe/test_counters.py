"""The counters other code reports to: compactions, channel-layer send failures, recovered
turns. Read from prometheus-client's registry, as /-/metrics serves it."""

from __future__ import annotations

import pytest
from channels_redis.pubsub import RedisPubSubChannelLayer
from prometheus_client import REGISTRY

from chat import observe
from chat.running import notify
from chat.services import _log, turns_recover
from tests.servers import free_port


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_compactions_are_counted_by_model_trigger_and_outcome():
    series = [
        {"model": "cred/m", "automatic": automatic, "outcome": outcome}
        for automatic in ("true", "false")
        for outcome in ("ok", "error")
    ]
    before = [sample("dispatch_compactions_total", **labels) for labels in series]

    observe.compaction(model="cred/m", automatic=True, outcome="ok")
    observe.compaction(model="cred/m", automatic=True, outcome="ok")
    observe.compaction(model="cred/m", automatic=False, outcome="error")

    after = [sample("dispatch_compactions_total", **labels) for labels in series]
    assert [a - b for a, b in zip(after, before, strict=True)] == [2, 0, 0, 1]


async def test_a_send_the_channel_layer_fails_is_counted_and_dropped(monkeypatch):
    # A Redis layer whose server is not there: every send fails with a connection error.
    layer = RedisPubSubChannelLayer(hosts=[f"redis://127.0.0.1:{free_port()}/0"])
    monkeypatch.setattr("chat.running.get_channel_layer", lambda: layer)
    before = sample("dispatch_channel_layer_send_failures_total", type="chat.status")

    await notify("conversation.x", {"type": "chat.status", "status": "idle"})  # never raises

    after = sample("dispatch_channel_layer_send_failures_total", type="chat.status")
    assert after == before + 1
    await layer.flush()


@pytest.mark.django_db(transaction=True)
def test_a_turn_sealed_by_recovery_counts_as_ended_interrupted(user):
    _log.conversation_ensure(user=user, conversation_id="orphan-1")
    _log.turn_begin(
        conversation_id="orphan-1", turn_id="turn-1-orphan", model="cred/m", worker="gone"
    )
    before = sample("dispatch_turns_ended_total", model="cred/m", reason="interrupted")

    assert turns_recover(stale_before=None) == ["turn-1-orphan"]

    after = sample("dispatch_turns_ended_total", model="cred/m", reason="interrupted")
    assert after == before + 1

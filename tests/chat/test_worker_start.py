"""A worker's start (chat.running.RunningTurns.ensure_started) on a real Redis channel layer,
whose new channel is a round trip: turns that start while it is under way must get the worker's
channel too, or their rows are stored without it (no heartbeat: another worker's sweep seals
them while they run; no replay for a socket on another worker)."""

from __future__ import annotations

import asyncio

import pytest
from channels_redis.pubsub import RedisPubSubChannelLayer
from redis.exceptions import RedisError

from chat.running import RunningTurns
from tests.servers import free_port


@pytest.fixture
def running():
    """A process's registry of running turns; its background loops stop with the test."""
    running = RunningTurns()
    yield running
    for task in running._background:
        task.cancel()


async def test_calls_made_while_the_worker_starts_get_its_channel(redis_layer, running):
    beats = []

    async def heartbeat() -> None:
        beats.append(1)
        await asyncio.Event().wait()

    names = await asyncio.gather(*(running.ensure_started(heartbeat) for _ in range(8)))

    assert names == [running.worker] * 8 and "dispatch.worker." in running.worker
    assert await running.ensure_started(heartbeat) == running.worker  # started once
    assert beats == [1]


async def test_a_start_the_layer_failed_is_made_again_by_the_next_call(
    monkeypatch, redis_layer, running
):
    down = RedisPubSubChannelLayer(hosts=[f"redis://127.0.0.1:{free_port()}/0"])
    monkeypatch.setattr("chat.running.get_channel_layer", lambda: down)

    failed = await asyncio.gather(running.ensure_started(), running.ensure_started(),
                                  return_exceptions=True)  # fmt: skip
    assert all(isinstance(f, RedisError) for f in failed) and running.worker == ""

    monkeypatch.setattr("chat.running.get_channel_layer", lambda: redis_layer)
    assert "dispatch.worker." in await running.ensure_started()

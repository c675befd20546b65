"""A socket's feed of a turn that runs in another worker (chat.feeds.TurnFeed), on a real Redis
channel layer: the owner is asked for the events so far again when it does not answer (the
layer may drop a request), and live events wait meanwhile, so none is lost or repeated."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async

from chat import feeds
from chat.feeds import TurnFeed
from chat.services import _log

TURN = "turn-1-feeds0"


@pytest.fixture
async def owner(monkeypatch, redis_layer, user):
    """The channel of a worker that owns a running turn of ``feed-1``; the test plays it."""
    monkeypatch.setattr(feeds.services, "worker_start", _started)  # this process runs no turn
    monkeypatch.setattr(feeds, "REPLAY_TIMEOUT", 0.05)
    channel = await redis_layer.new_channel("dispatch.worker.")
    await database_sync_to_async(_open)(user, channel)
    return redis_layer, channel


async def _started() -> str:
    return "this-worker"


def _open(user, worker: str) -> None:
    _log.conversation_ensure(user=user, conversation_id="feed-1")
    _log.turn_begin(conversation_id="feed-1", turn_id=TURN, model="m", worker=worker)


async def asked(layer, channel) -> dict:
    """The next request the owner gets (bounded: a test must not hang on a missing one)."""
    return await asyncio.wait_for(layer.receive(channel), 30)


def live(index: int) -> dict:
    return {"turn": TURN, "index": index, "event": {"n": index}}


def watcher() -> tuple[TurnFeed, list[dict], asyncio.Event]:
    delivered: list[dict] = []
    released = asyncio.Event()

    async def deliver(message: dict) -> None:
        delivered.append(message["event"])
        released.set()

    return TurnFeed("feed-1", deliver, held=True), delivered, released


@pytest.mark.django_db(transaction=True)
async def test_an_owner_whose_request_was_lost_is_asked_again(owner):
    layer, channel = owner
    feed, delivered, _ = watcher()

    await feed.replay(reply_to="socket-1")
    request = {"type": "turn.replay", "conversation": "feed-1", "reply_to": "socket-1"}
    assert await asked(layer, channel) == request  # lost: never answered
    await feed.on_event(live(2))  # a live event waits for the replay
    assert await asked(layer, channel) == request  # asked again
    assert delivered == []

    await feed.on_replay({"turn": TURN, "events": [{"n": 0}, {"n": 1}, {"n": 2}]})
    await feed.on_event(live(3))
    assert delivered == [{"n": 0}, {"n": 1}, {"n": 2}, {"n": 3}]  # no gap, no repeat


@pytest.mark.django_db(transaction=True)
async def test_an_owner_that_never_answers_is_asked_three_times_then_live_goes_on(owner):
    layer, channel = owner
    feed, delivered, released = watcher()

    await feed.replay(reply_to="socket-1")
    await feed.on_event(live(5))
    asks = [await asked(layer, channel) for _ in range(feeds.REPLAY_ASKS)]
    await asyncio.wait_for(released.wait(), 30)

    assert [a["reply_to"] for a in asks] == ["socket-1"] * 3
    assert delivered == [{"n": 5}]
    await feed.on_replay({"turn": TURN, "events": [{"n": 0}]})  # too late: dropped
    assert delivered == [{"n": 5}]

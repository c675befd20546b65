"""The embedded channel layer still delivers, groups and expires like Channels' own."""

from __future__ import annotations

import pytest

from chat.overrides import channel_layer as channel_layers
from chat.overrides.channel_layer import InMemoryChannelLayer


async def test_send_receive_and_groups():
    layer = InMemoryChannelLayer()
    a, b = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("g", a)
    await layer.group_add("g", b)
    await layer.group_send("g", {"type": "x", "n": 1})
    assert await layer.receive(a) == {"type": "x", "n": 1}
    assert await layer.receive(b) == {"type": "x", "n": 1}


async def test_expired_messages_are_still_dropped_by_the_timed_sweep(monkeypatch):
    clock = {"wall": 1000.0, "mono": 50.0}
    monkeypatch.setattr(channel_layers.time, "monotonic", lambda: clock["mono"])
    monkeypatch.setattr("channels.layers.time.time", lambda: clock["wall"])
    layer = InMemoryChannelLayer(expiry=10)
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "old"})
    layer._clean_expired()  # the first sweep runs: nothing has expired yet
    clock["wall"] += 60  # the message expires
    layer._clean_expired()  # within a second of the last sweep: skipped
    assert not layer.channels[channel].empty()
    clock["mono"] += channel_layers.CLEAN_EVERY
    layer._clean_expired()  # a second later the sweep runs and drops it
    assert channel not in layer.channels or layer.channels[channel].empty()


@pytest.mark.parametrize("groups", [1, 500])
async def test_cleaning_work_does_not_grow_with_each_send(groups, monkeypatch):
    layer = InMemoryChannelLayer()
    sweeps = []
    monkeypatch.setattr(
        channel_layers._ChannelsInMemoryLayer, "_clean_expired", lambda self: sweeps.append(1)
    )
    channel = await layer.new_channel()
    for index in range(groups):
        await layer.group_add(f"g{index}", channel)
    for _ in range(100):
        await layer.group_send("g0", {"type": "x"})
        await layer.receive(channel)
    assert len(sweeps) <= 1  # one sweep per second at most, not one per send and receive


async def test_a_full_member_does_not_stop_the_others():
    layer = InMemoryChannelLayer(capacity=1)
    full, free = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("g", full)
    await layer.group_add("g", free)
    await layer.send(full, {"type": "already"})
    await layer.group_send("g", {"type": "x"})
    assert await layer.receive(free) == {"type": "x"}
    assert await layer.receive(full) == {"type": "already"}


async def test_bad_names_are_refused_every_time_and_good_ones_are_checked_once():
    layer = InMemoryChannelLayer()
    for _ in range(2):  # a refusal is not remembered as a pass
        with pytest.raises(TypeError):
            await layer.send("bad name!?", {"type": "x"})
        with pytest.raises(TypeError):
            await layer.group_send("bad group name", {"type": "x"})
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "x"})
    assert await layer.receive(channel) == {"type": "x"}


async def test_a_channel_keeps_its_queue_until_it_is_empty():
    layer = InMemoryChannelLayer()
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "a"})
    queue = layer.channels[channel]
    await layer.send(channel, {"type": "b"})
    assert layer.channels[channel] is queue  # no second queue for a channel that has one
    assert await layer.receive(channel) == {"type": "a"}
    assert layer.channels[channel] is queue
    assert await layer.receive(channel) == {"type": "b"}
    assert channel not in layer.channels  # emptied: dropped, as Channels does

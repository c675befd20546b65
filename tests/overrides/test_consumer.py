"""DirectDispatch: the consumers' message loop (socket + channel layer → one handler at a time)."""

from __future__ import annotations

import asyncio

import pytest
from channels.consumer import AsyncConsumer
from channels.exceptions import StopConsumer

from chat.overrides.consumer import DirectDispatch


class Recorder(DirectDispatch, AsyncConsumer):
    """Records what it handles; a handler that awaits shows whether handlers ever overlap."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[str] = []
        self.running = 0
        self.joined = asyncio.Event()

    async def websocket_connect(self, message):
        await self.channel_layer.group_add("recorder", self.channel_name)
        self.joined.set()

    async def websocket_receive(self, message):
        await self._handle(message["text"])

    async def test_event(self, message):
        await self._handle(message["n"])

    async def websocket_disconnect(self, message):
        await self.channel_layer.group_discard("recorder", self.channel_name)
        raise StopConsumer

    async def _handle(self, what: str) -> None:
        self.running += 1
        assert self.running == 1, "two messages were handled at once"
        await asyncio.sleep(0)  # yield to the readers mid-handler
        self.log.append(what)
        self.running -= 1


async def test_socket_and_group_messages_are_handled_one_at_a_time_in_order():
    consumer = Recorder()
    socket: asyncio.Queue[dict] = asyncio.Queue()
    await socket.put({"type": "websocket.connect"})
    running = asyncio.create_task(consumer({"type": "websocket"}, socket.get, socket.put))
    await consumer.joined.wait()
    layer = consumer.channel_layer
    for n in range(50):
        await layer.group_send("recorder", {"type": "test.event", "n": f"g{n}"})
    for n in range(50):
        await socket.put({"type": "websocket.receive", "text": f"s{n}"})
    await socket.put({"type": "websocket.disconnect", "code": 1000})
    await asyncio.wait_for(running, timeout=10)  # a deadlock guard, not a timing assertion

    group = [x for x in consumer.log if x.startswith("g")]
    frames = [x for x in consumer.log if x.startswith("s")]
    assert group == [f"g{n}" for n in range(50)]
    assert frames == [f"s{n}" for n in range(50)]


async def test_a_failing_source_ends_the_consumer_with_its_error():
    consumer = Recorder()
    messages = [{"type": "websocket.connect"}]

    async def receive():
        if messages:
            return messages.pop()
        raise ConnectionError("socket gone")

    with pytest.raises(ConnectionError, match="socket gone"):
        await asyncio.wait_for(consumer({"type": "websocket"}, receive, None), timeout=10)


class TwoLanes(Recorder):
    """Frames and group messages in separate lanes; a frame ``block`` waits for ``release``."""

    SEPARATE_LANES = True

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.lane_running = {"s": 0, "g": 0}
        self.fifty = asyncio.Event()  # 50 messages were handled

    async def websocket_receive(self, message):
        if message["text"] == "block":
            await self.release.wait()
        await self._handle(message["text"])

    async def _handle(self, what: str) -> None:
        lane = "g" if what.startswith("g") else "s"
        self.lane_running[lane] += 1
        assert self.lane_running[lane] == 1, "two messages of one lane were handled at once"
        self.running += 1
        await asyncio.sleep(0)
        self.log.append(what)
        if len(self.log) == 50:
            self.fifty.set()
        self.running -= 1
        self.lane_running[lane] -= 1


async def test_separate_lanes_a_waiting_frame_does_not_hold_up_group_messages():
    consumer = TwoLanes()
    socket: asyncio.Queue[dict] = asyncio.Queue()
    await socket.put({"type": "websocket.connect"})
    running = asyncio.create_task(consumer({"type": "websocket"}, socket.get, socket.put))
    await consumer.joined.wait()
    await socket.put({"type": "websocket.receive", "text": "block"})
    for n in range(20):
        await socket.put({"type": "websocket.receive", "text": f"s{n}"})
    layer = consumer.channel_layer
    for n in range(50):
        await layer.group_send("recorder", {"type": "test.event", "n": f"g{n}"})
    # Every group message is handled while the first frame still waits.
    await asyncio.wait_for(consumer.fifty.wait(), timeout=10)
    assert consumer.log == [f"g{n}" for n in range(50)]
    consumer.release.set()
    await socket.put({"type": "websocket.disconnect", "code": 1000})
    await asyncio.wait_for(running, timeout=10)  # a deadlock guard, not a timing assertion
    frames = [x for x in consumer.log if x.startswith("s") or x == "block"]
    assert frames == ["block", *(f"s{n}" for n in range(20))]


async def test_separate_lanes_a_failing_group_handler_ends_the_consumer():
    consumer = TwoLanes()

    async def broken(message):
        raise RuntimeError("handler failed")

    consumer.test_event = broken
    socket: asyncio.Queue[dict] = asyncio.Queue()
    await socket.put({"type": "websocket.connect"})
    running = asyncio.create_task(consumer({"type": "websocket"}, socket.get, socket.put))
    await consumer.joined.wait()
    await consumer.channel_layer.group_send("recorder", {"type": "test.event", "n": "g0"})
    with pytest.raises(RuntimeError, match="handler failed"):
        await asyncio.wait_for(running, timeout=10)

"""Fakes for the runtime kernel's tests: a scripted provider, a fake clock and sleep,
in-memory ports and scriptable tools.

Nothing here waits on wall-clock time. Tests pause a stream or a tool on an ``asyncio.Event``
and release it themselves; ``GUARD_SECONDS`` only turns a would-be hang into a failure.
"""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from chat.runtime import (
    Message,
    ProviderEvent,
    ProviderRequest,
    ToolContext,
    ToolOutcome,
    ToolSpec,
    TurnConfig,
    TurnMetrics,
    TurnObserver,
    TurnPorts,
    TurnRunner,
)

GUARD_SECONDS = 5.0
CONVERSATION_ID = "conv-1"
TURN_ID = "turn-1700000000000-abc123"


# ---------------------------------------------------------------- clock and sleep


class FakeClock:
    """A monotonic clock that only moves when a script or a tool advances it."""

    def __init__(self, start: float = 1000.0):
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeSleep:
    """Records every delay and returns at once, unless ``gate`` is set: then it waits on it."""

    def __init__(self) -> None:
        self.delays: list[float] = []
        self.started = asyncio.Event()
        self.gate: asyncio.Event | None = None
        self.cancelled = False

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        self.started.set()
        if self.gate is None:
            return
        try:
            await self.gate.wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise


# ---------------------------------------------------------------- the scripted provider


@dataclass(frozen=True)
class Tick:
    """Advance the fake clock by ``seconds`` at this point of the stream."""

    seconds: float


@dataclass(frozen=True)
class Wait:
    """Pause the stream until ``event`` is set."""

    event: asyncio.Event


@dataclass(frozen=True)
class Signal:
    """Set ``event``: tells the test the stream got here."""

    event: asyncio.Event


ScriptItem = ProviderEvent | Tick | Wait | Signal | BaseException
Script = Sequence[ScriptItem]


class ScriptedProvider:
    """A Provider whose n-th ``stream()`` call plays the n-th script.

    Provider events are yielded, exceptions raised, ``Tick``/``Wait``/``Signal`` act on the clock
    and on events. Every request is recorded (deep-copied, as the provider saw it).
    """

    def __init__(self, clock: FakeClock, scripts: Iterable[Script]):
        self.clock = clock
        self.scripts = list(scripts)
        self.requests: list[ProviderRequest] = []
        self.closed = 0  # streams that ended, normally, by error or by being closed

    def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        self.requests.append(copy.deepcopy(request))
        if not self.scripts:
            raise AssertionError(f"unexpected provider call #{len(self.requests)}")
        return self._play(self.scripts.pop(0))

    async def _play(self, script: Script) -> AsyncIterator[ProviderEvent]:
        try:
            for item in script:
                if isinstance(item, Tick):
                    self.clock.advance(item.seconds)
                elif isinstance(item, Wait):
                    await item.event.wait()
                elif isinstance(item, Signal):
                    item.event.set()
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item
        finally:
            self.closed += 1


# ---------------------------------------------------------------- in-memory ports


@dataclass
class Transaction:
    """One persistence call: ``persist_user`` ("user") or ``persist_step`` ("step")."""

    kind: Literal["user", "step"]
    messages: list[Message]
    at_event: int  # how many events had been emitted when it was committed


@dataclass
class _Waiter:
    predicate: Callable[[dict[str, Any]], bool]
    future: asyncio.Future[dict[str, Any]]


class MemoryPorts:
    """Records emitted events, persisted transactions, queue drains and sealed metrics."""

    def __init__(self, queue: Iterable[list[str]] = ()):
        self.events: list[dict[str, Any]] = []
        self.transactions: list[Transaction] = []
        self.queue = list(queue)  # what each drain_queue call returns, in order
        self.drains: list[int] = []  # event count at each drain_queue call
        self.sealed: list[dict[str, Any]] = []
        self.sealed_at: list[int] = []
        self.fail_persist_user: Exception | None = None
        self.fail_persist_step: Exception | None = None
        self.fail_drain: Exception | None = None
        self.last_seq = 0  # the log's seqs: persisted messages get theirs, as the real log's
        # Synchronous hooks, called after the event is recorded / when the queue is drained.
        self.on_event: Callable[[dict[str, Any]], None] | None = None
        self.on_drain: Callable[[], None] | None = None
        self._waiters: list[_Waiter] = []

    async def emit(self, event: dict[str, Any]) -> None:
        self.events.append(copy.deepcopy(event))
        for waiter in list(self._waiters):
            if waiter.predicate(event) and not waiter.future.done():
                waiter.future.set_result(event)
                self._waiters.remove(waiter)
        if self.on_event is not None:
            self.on_event(event)

    async def persist_user(self, message: Message) -> None:
        if self.fail_persist_user is not None:
            raise self.fail_persist_user
        self.transactions.append(Transaction("user", [copy.deepcopy(message)], len(self.events)))
        self._stamp([message])

    async def persist_step(self, messages: list[Message]) -> None:
        if self.fail_persist_step is not None:
            raise self.fail_persist_step
        self.transactions.append(Transaction("step", copy.deepcopy(messages), len(self.events)))
        self._stamp(messages)

    def _stamp(self, messages: list[Message]) -> None:
        for message in messages:
            self.last_seq += len(message.chunks)
            message.seq = self.last_seq

    async def drain_queue(self) -> list[str]:
        self.drains.append(len(self.events))
        if self.on_drain is not None:
            self.on_drain()
        if self.fail_drain is not None:
            raise self.fail_drain
        return self.queue.pop(0) if self.queue else []

    async def seal(self, metrics: TurnMetrics) -> None:
        self.sealed.append(metrics.to_wire())  # the wire shape: what the tests assert on
        self.sealed_at.append(len(self.events))

    async def wait_for(self, type_: str, **fields: Any) -> dict[str, Any]:
        """The first event (already emitted or to come) of ``type_`` with these field values."""

        def predicate(event: dict[str, Any]) -> bool:
            return event["type"] == type_ and all(event.get(k) == v for k, v in fields.items())

        for event in self.events:
            if predicate(event):
                return event
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters.append(_Waiter(predicate, future))
        return await asyncio.wait_for(future, GUARD_SECONDS)

    # -- reading the record

    def types(self) -> list[str]:
        return [event["type"] for event in self.events]

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["type"] == type_]

    def index(self, type_: str, **fields: Any) -> int:
        """Position of the first event of ``type_`` with these field values."""
        for i, event in enumerate(self.events):
            if event["type"] == type_ and all(event.get(k) == v for k, v in fields.items()):
                return i
        raise AssertionError(f"no {type_} event with {fields} in {self.types()}")

    def steps(self) -> list[list[Message]]:
        return [t.messages for t in self.transactions if t.kind == "step"]


# ---------------------------------------------------------------- tools


class ToolBench:
    """Makes FakeTools that share the fake clock and a record of which tools are running."""

    def __init__(self, clock: FakeClock):
        self.clock = clock
        self.active: set[str] = set()

    def tool(self, name: str, **behaviour: Any) -> FakeTool:
        return FakeTool(self, name, **behaviour)


@dataclass(eq=False)
class FakeTool:
    """A Tool that records its runs. On each run it: marks itself active, streams ``output``,
    waits on ``gate`` (when set), advances the clock by ``ticks``, raises ``raises`` or returns
    ``content`` (default: its name and input)."""

    bench: ToolBench
    name: str
    safe: bool = True
    gate: asyncio.Event | None = None
    ticks: float = 0.0
    raises: Exception | None = None
    content: str | None = None
    is_error: bool = False
    output: list[tuple[str, str]] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    cwds: list[str] = field(default_factory=list)
    active_at_start: list[frozenset[str]] = field(default_factory=list)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    finished: int = 0
    cancelled: bool = False

    @property
    def spec(self) -> ToolSpec:
        return ToolSpec(self.name, f"the {self.name} tool", {"type": "object"})

    @property
    def concurrency_safe(self) -> bool:
        return self.safe

    async def run(self, input: dict[str, Any], ctx: ToolContext) -> ToolOutcome:
        self.runs.append(input)
        self.cwds.append(ctx.cwd)
        self.bench.active.add(self.name)
        self.active_at_start.append(frozenset(self.bench.active))
        self.started.set()
        try:
            for data, stream in self.output:
                await ctx.emit_output(data, stream)
            if self.gate is not None:
                await self.gate.wait()
            self.bench.clock.advance(self.ticks)
            if self.raises is not None:
                raise self.raises
            self.finished += 1
            content = self.content
            if content is None:
                content = f"{self.name} {json.dumps(input, sort_keys=True)}"
            return ToolOutcome(content, is_error=self.is_error)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        finally:
            self.bench.active.discard(self.name)


# ---------------------------------------------------------------- one turn, wired up


class Turn:
    """A TurnRunner wired to the fakes above."""

    def __init__(
        self,
        scripts: Iterable[Script],
        *,
        tools: Callable[[ToolBench], Iterable[FakeTool]] | None = None,
        queue: Iterable[list[str]] = (),
        history: list[Message] | None = None,
        prompt: str = "hello",
        count_tokens: Callable[[ProviderRequest], Any] | None = None,
        observer: TurnObserver | None = None,
        **config: Any,
    ):
        self.clock = FakeClock()
        self.sleep = FakeSleep()
        self.bench = ToolBench(self.clock)
        self.provider = ScriptedProvider(self.clock, scripts)
        self.ports = MemoryPorts(queue)
        if history:
            self.ports.last_seq = max((m.seq or 0) for m in history)
        self.tools = {tool.name: tool for tool in (tools(self.bench) if tools else ())}
        self.config = TurnConfig(
            conversation_id=CONVERSATION_ID,
            turn_id=TURN_ID,
            prompt=prompt,
            history=history if history is not None else [],
            **{"model": "cred/model-x", "provider_model": "model-x", **config},
        )
        self.runner = TurnRunner(
            self.config,
            TurnPorts(
                provider=self.provider,
                emit=self.ports.emit,
                persist_user=self.ports.persist_user,
                persist_step=self.ports.persist_step,
                drain_queue=self.ports.drain_queue,
                seal=self.ports.seal,
                tools=self.tools,
                clock=self.clock,
                sleep=self.sleep,
                count_tokens=count_tokens,
                **({"observer": observer} if observer is not None else {}),
            ),
        )

    async def run(self) -> dict[str, Any]:
        """Run the turn to its end and return the TurnMetrics it sealed, as its wire dict."""
        return (await asyncio.wait_for(self.runner.run(), GUARD_SECONDS)).to_wire()

    def start(self) -> asyncio.Task[dict[str, Any]]:
        """Run the turn in the background (for tests that pause and abort it)."""
        return asyncio.ensure_future(self.run())

    def step(self, index: int) -> str:
        return f"{TURN_ID}#{index}"


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def stored(messages: list[Message]) -> list[Message]:
    """``messages`` as read from a log: each gets the seq of its last chunk (from 1)."""
    seq = 0
    for message in messages:
        seq += len(message.chunks)
        message.seq = seq
    return messages


def call_chunk(call_id: str, name: str, input: dict[str, Any], step: str) -> dict[str, Any]:
    return {
        "type": "tool-call",
        "toolCallId": call_id,
        "toolName": name,
        "input": input,
        "stepId": step,
    }


def result_chunk(
    call_id: str, name: str, content: str, step: str, *, is_error: bool = False
) -> dict[str, Any]:
    return {
        "type": "tool-result",
        "toolCallId": call_id,
        "toolName": name,
        "content": content,
        "isError": is_error,
        "stepId": step,
    }

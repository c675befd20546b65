"""The observer port: what a turn reports at its boundaries, in pairs, never per delta."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from chat.runtime import (
    Finish,
    ProviderError,
    TextDelta,
    ToolCallReady,
    TurnObserver,
    Usage,
    UsageReport,
)
from tests.chat.runtime.fakes import GUARD_SECONDS, Signal, Tick, Turn, Wait


class Recorder(TurnObserver):
    """Records every call as a tuple (the method's name, then what it was told)."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def turn_started(self):
        self.calls.append(("turn_started",))

    def step_started(self, step_id, request):
        self.calls.append(("step_started", step_id, request.model, len(request.messages)))

    def provider_retry(self, step_id, error, attempt):
        self.calls.append(("provider_retry", step_id, error.code, attempt))

    def step_ended(self, metrics, finish_reason, error):
        self.calls.append(("step_ended", metrics, finish_reason, error and error.code))

    def tool_started(self, step_id, call):
        self.calls.append(("tool_started", step_id, call["toolName"]))

    def tool_ended(self, step_id, call, outcome, duration_ms):
        result = None if outcome is None else (outcome.content, outcome.is_error)
        self.calls.append(("tool_ended", step_id, call["toolName"], result, duration_ms))

    def turn_ended(self, metrics):
        self.calls.append(("turn_ended", metrics.finish_reason, metrics.usage))

    def names(self) -> list[str]:
        return [call[0] for call in self.calls]


async def test_a_tool_turn_is_reported_step_by_step_and_tool_by_tool():
    recorder = Recorder()
    turn = Turn(
        [
            [
                Tick(0.2),
                TextDelta("let me look"),
                Tick(0.3),
                ToolCallReady("c1", "look", {"at": "x"}),
                UsageReport(Usage(100, 10)),
                Finish("tool-calls"),
            ],
            [Tick(0.1), TextDelta("found"), UsageReport(Usage(130, 4)), Finish("stop")],
        ],
        tools=lambda bench: [bench.tool("look", ticks=0.05)],
        observer=recorder,
    )

    metrics = await turn.run()

    assert recorder.names() == [
        "turn_started",
        "step_started",
        "step_ended",
        "tool_started",
        "tool_ended",
        "step_started",
        "step_ended",
        "turn_ended",
    ]
    _, step0, model, messages = recorder.calls[1]
    assert (step0, model, messages) == (turn.step(0), "model-x", 1)
    _, first, reason, error = recorder.calls[2]
    assert first.step_id == turn.step(0) and first.usage == Usage(100, 10)
    assert (first.ttft_ms, first.decode_ms, first.gen_total_ms) == (200.0, 300.0, 500.0)
    assert (reason, error) == ("tool-calls", None)
    assert recorder.calls[3] == ("tool_started", turn.step(0), "look")
    assert recorder.calls[4] == (
        "tool_ended",
        turn.step(0),
        "look",
        ('look {"at": "x"}', False),
        50.0,
    )
    assert recorder.calls[5][1:] == (turn.step(1), "model-x", 3)  # the history grew
    assert recorder.calls[6][2] == "stop"
    assert recorder.calls[7] == ("turn_ended", "stop", Usage(230, 14))
    assert metrics["finishReason"] == "stop"


async def test_deltas_are_not_reported_one_by_one():
    recorders = [Recorder(), Recorder()]
    for recorder, count in zip(recorders, (1, 500), strict=True):
        deltas = [TextDelta(f"t{n} ") for n in range(count)]
        await Turn([[*deltas, Finish("stop")]], observer=recorder).run()

    assert recorders[0].names() == recorders[1].names()


async def test_retries_and_a_provider_that_gives_up_are_reported_with_their_codes():
    recorder = Recorder()
    turn = Turn(
        [
            [ProviderError("busy", code="429", retryable=True)],
            [ProviderError("bad request", code="400")],
        ],
        retry_delays=(0.5,),
        observer=recorder,
    )

    metrics = await turn.run()

    assert recorder.names() == [
        "turn_started",
        "step_started",
        "provider_retry",
        "step_ended",
        "turn_ended",
    ]
    assert recorder.calls[2] == ("provider_retry", turn.step(0), "429", 1)
    assert recorder.calls[3][2:] == ("error", "400")
    assert metrics["finishReason"] == "error"


async def test_an_abort_mid_stream_and_mid_tool_still_closes_every_pair():
    paused, never = asyncio.Event(), asyncio.Event()
    recorder = Recorder()
    turn = Turn(
        [[TextDelta("partial"), Signal(paused), Wait(never)]],
        observer=recorder,
    )
    task = turn.start()
    await asyncio.wait_for(paused.wait(), GUARD_SECONDS)
    turn.runner.abort()
    await task

    assert recorder.names() == ["turn_started", "step_started", "step_ended", "turn_ended"]
    ended = recorder.calls[2]
    assert ended[2] == "aborted" and ended[1].gen_total_ms is not None

    gate = asyncio.Event()
    recorder = Recorder()
    turn = Turn(
        [[ToolCallReady("c1", "slow", {}), Finish("tool-calls")]],
        tools=lambda bench: [bench.tool("slow", gate=gate)],
        observer=recorder,
    )
    task = turn.start()
    await asyncio.wait_for(turn.tools["slow"].started.wait(), GUARD_SECONDS)
    turn.runner.abort()
    await task

    assert recorder.names()[-3:] == ["tool_started", "tool_ended", "turn_ended"]
    assert recorder.calls[-2][3] is None  # cancelled: no outcome
    assert recorder.calls[-1][1] == "aborted"


async def test_an_unknown_tool_and_a_raising_tool_are_reported_as_errors():
    recorder = Recorder()
    turn = Turn(
        [
            [
                ToolCallReady("c1", "nope", {}),
                ToolCallReady("c2", "boom", {}),
                Finish("tool-calls"),
            ],
            [TextDelta("ok"), Finish("stop")],
        ],
        tools=lambda bench: [bench.tool("boom", raises=RuntimeError("kaput"))],
        observer=recorder,
    )

    await turn.run()

    ended = {call[2]: call[3] for call in recorder.calls if call[0] == "tool_ended"}
    assert ended == {
        "nope": ("unknown tool: nope", True),
        "boom": ("RuntimeError: kaput", True),
    }


async def test_the_turn_is_reported_ended_even_when_sealing_fails():
    recorder = Recorder()
    turn = Turn([[TextDelta("hi"), Finish("stop")]], observer=recorder)

    async def failing_seal(metrics):
        raise RuntimeError("database gone")

    turn.runner.ports.seal = failing_seal
    with pytest.raises(RuntimeError, match="database gone"):
        await turn.run()

    assert recorder.names()[-1] == "turn_ended"
    assert recorder.calls[-1][1] == "stop"

"""Abort (stop/close): the turn stops at the next event boundary and still ends sealed."""

from __future__ import annotations

import asyncio

from chat.runtime import (
    Finish,
    Message,
    ProviderError,
    ReasoningDelta,
    TextDelta,
    ToolCallReady,
    Usage,
    UsageReport,
)
from tests.chat.runtime.fakes import (
    GUARD_SECONDS,
    Signal,
    Tick,
    Turn,
    Wait,
    call_chunk,
    result_chunk,
    text,
)


def assert_ended_aborted(turn: Turn, metrics: dict) -> None:
    assert turn.ports.types()[-2:] == ["done", "turn-sealed"]
    assert turn.ports.of("done")[0]["reason"] == "aborted"
    assert metrics["finishReason"] == "aborted"
    assert turn.ports.sealed == [metrics]
    assert turn.ports.of("error") == []


async def test_abort_while_streaming_keeps_partial_text_and_drops_the_steps_calls():
    paused, never = asyncio.Event(), asyncio.Event()
    turn = Turn(
        [
            [
                ReasoningDelta("pondering"),
                TextDelta("Partial "),
                ToolCallReady("c1", "look", {}),
                TextDelta("answer"),
                Signal(paused),
                Wait(never),
                TextDelta("never seen"),
            ]
        ],
        tools=lambda bench: [bench.tool("look")],
    )
    task = turn.start()
    await asyncio.wait_for(paused.wait(), GUARD_SECONDS)

    turn.runner.abort()
    metrics = await task

    assert_ended_aborted(turn, metrics)
    assert turn.ports.steps() == [
        [Message("assistant", [{"type": "thinking", "text": "pondering"}, text("Partial answer")])]
    ]
    assert turn.tools["look"].runs == []
    assert turn.ports.of("tool-result") == []
    assert turn.provider.closed == 1  # the stream was closed, not left dangling


async def test_abort_from_an_event_stops_at_the_next_event_boundary():
    turn = Turn([[TextDelta("one"), TextDelta("two"), TextDelta("three"), Finish("stop")]])

    def abort_after_first_delta(event: dict) -> None:
        if event["type"] == "text-delta":
            turn.runner.abort()

    turn.ports.on_event = abort_after_first_delta

    metrics = await turn.run()

    assert [e["delta"] for e in turn.ports.of("text-delta")] == ["one"]
    assert turn.ports.steps() == [[Message("assistant", [text("one")])]]
    assert_ended_aborted(turn, metrics)


async def test_abort_during_a_pending_tool_cancels_it_and_keeps_finished_pairs():
    gate = asyncio.Event()
    turn = Turn(
        [
            [
                TextDelta("working"),
                ToolCallReady("c1", "fast", {}),
                ToolCallReady("c2", "slow", {}),
                UsageReport(Usage(10, 2)),
                Finish("tool-calls"),
            ]
        ],
        tools=lambda bench: [bench.tool("fast"), bench.tool("slow", gate=gate)],
    )
    task = turn.start()
    await turn.ports.wait_for("tool-result", toolCallId="c1")
    await asyncio.wait_for(turn.tools["slow"].started.wait(), GUARD_SECONDS)

    turn.runner.abort()
    metrics = await task

    assert_ended_aborted(turn, metrics)
    assert turn.tools["slow"].cancelled
    assert turn.tools["slow"].finished == 0
    s0 = turn.step(0)
    # Never a tool call without its result: c2 is gone from both messages.
    assert turn.ports.steps() == [
        [
            Message("assistant", [text("working"), call_chunk("c1", "fast", {}, s0)]),
            Message("tool", [result_chunk("c1", "fast", "fast {}", s0)]),
        ]
    ]
    assert [r["toolCallId"] for r in turn.ports.of("tool-result")] == ["c1"]
    assert metrics["usage"] == {"inputTokens": 10, "outputTokens": 2}


async def test_abort_during_an_unsafe_tool_skips_the_calls_after_it():
    gate = asyncio.Event()
    turn = Turn(
        [
            [
                ToolCallReady("c1", "first", {}),
                ToolCallReady("c2", "blocker", {}),
                ToolCallReady("c3", "later", {}),
                Finish("tool-calls"),
            ]
        ],
        tools=lambda bench: [
            bench.tool("first", safe=False),
            bench.tool("blocker", safe=False, gate=gate),
            bench.tool("later", safe=False),
        ],
    )
    task = turn.start()
    await asyncio.wait_for(turn.tools["blocker"].started.wait(), GUARD_SECONDS)

    turn.runner.abort()
    metrics = await task

    assert_ended_aborted(turn, metrics)
    assert turn.tools["later"].runs == []
    (persisted,) = turn.ports.steps()
    assert [c["toolCallId"] for m in persisted for c in m.chunks] == ["c1", "c1"]


async def test_abort_between_steps_does_not_start_the_next_step():
    turn = Turn(
        [
            [ToolCallReady("c1", "look", {}), UsageReport(Usage(50, 5)), Finish("tool-calls")],
            [TextDelta("never"), Finish("stop")],
        ],
        tools=lambda bench: [bench.tool("look")],
    )
    turn.ports.on_drain = turn.runner.abort

    metrics = await turn.run()

    assert_ended_aborted(turn, metrics)
    assert len(turn.provider.requests) == 1
    assert [[m.role for m in s] for s in turn.ports.steps()] == [["assistant", "tool"]]
    assert [s["stepId"] for s in metrics["steps"]] == [turn.step(0)]
    # The last step that ran sets the context size, not the step that never started.
    assert turn.ports.of("done")[0]["contextSize"] == 55
    assert metrics["contextSize"] == 55


async def test_abort_during_a_retry_sleep():
    turn = Turn(
        [[ProviderError("overloaded", code="529", retryable=True)], [TextDelta("never")]],
        retry_delays=(3.0,),
    )
    turn.sleep.gate = asyncio.Event()
    task = turn.start()
    await asyncio.wait_for(turn.sleep.started.wait(), GUARD_SECONDS)

    turn.runner.abort()
    metrics = await task

    assert_ended_aborted(turn, metrics)
    assert turn.sleep.cancelled
    assert len(turn.provider.requests) == 1
    assert len(turn.ports.of("provider-retry")) == 1
    assert turn.ports.steps() == []  # nothing was produced: nothing to persist


async def test_abort_before_the_first_step():
    turn = Turn([[TextDelta("never")]])

    def abort_on_turn_start(event: dict) -> None:
        if event["type"] == "turn-start":
            turn.runner.abort()

    turn.ports.on_event = abort_on_turn_start

    metrics = await turn.run()

    assert_ended_aborted(turn, metrics)
    assert turn.provider.requests == []
    assert [t.kind for t in turn.ports.transactions] == ["user"]
    assert metrics["steps"] == []


async def test_abort_after_the_turn_ended_changes_nothing():
    turn = Turn([[TextDelta("done"), Finish("stop")]])

    metrics = await turn.run()
    turn.runner.abort()

    assert metrics["finishReason"] == "stop"
    assert turn.ports.types()[-1] == "turn-sealed"
    assert len(turn.ports.sealed) == 1


# ---------------------------------------------------------------- interrupt (a worker's deadline)


async def test_interrupt_while_streaming_keeps_only_the_committed_steps():
    paused, never = asyncio.Event(), asyncio.Event()
    turn = Turn(
        [
            [ToolCallReady("c1", "look", {}), UsageReport(Usage(50, 5)), Finish("tool-calls")],
            [TextDelta("half an ans"), Signal(paused), Wait(never), TextDelta("wer")],
        ],
        tools=lambda bench: [bench.tool("look")],
    )
    task = turn.start()
    await asyncio.wait_for(paused.wait(), GUARD_SECONDS)

    turn.runner.interrupt()
    metrics = await task

    assert turn.ports.types()[-2:] == ["done", "turn-sealed"]
    assert turn.ports.of("done")[0]["reason"] == "interrupted"
    assert metrics["finishReason"] == "interrupted"
    assert turn.ports.of("error") == []
    # Step 0 (call + result) was committed; the streaming step 1 is dropped, text and metrics.
    assert [[m.role for m in s] for s in turn.ports.steps()] == [["assistant", "tool"]]
    assert [s["stepId"] for s in metrics["steps"]] == [turn.step(0)]
    assert metrics["usage"] == {"inputTokens": 50, "outputTokens": 5}
    assert turn.provider.closed == 2  # step 1's stream too was closed, not left dangling


async def test_interrupt_during_a_tool_drops_the_whole_step():
    gate = asyncio.Event()
    turn = Turn(
        [[TextDelta("working"), ToolCallReady("c1", "slow", {}), Finish("tool-calls")]],
        tools=lambda bench: [bench.tool("slow", gate=gate)],
    )
    task = turn.start()
    await asyncio.wait_for(turn.tools["slow"].started.wait(), GUARD_SECONDS)

    turn.runner.interrupt()
    metrics = await task

    assert turn.tools["slow"].cancelled
    assert turn.ports.steps() == []
    assert metrics["finishReason"] == "interrupted" and metrics["steps"] == []


async def test_a_stopped_step_counts_its_streamed_tokens_and_ends_at_its_last_token():
    """Honest metrics: the provider's usage never came, so the output is the streamed pieces
    (estimated); the time between the last token and the stop is not generation time."""
    paused, never = asyncio.Event(), asyncio.Event()
    turn = Turn(
        [
            [
                Tick(0.5),  # reading the prompt
                TextDelta("one "),
                Tick(0.1),
                TextDelta("two three ", tokens=2),  # a provider batch of two pieces
                Tick(0.1),
                ReasoningDelta("four"),
                Signal(paused),
                Tick(7.0),  # a stall, then the user stops
                Wait(never),
            ]
        ]
    )
    task = turn.start()
    await asyncio.wait_for(paused.wait(), GUARD_SECONDS)
    turn.runner.abort()
    metrics = await task

    estimate = {"inputTokens": 0, "outputTokens": 4, "estimated": True}
    assert turn.ports.of("done")[0]["usage"] == estimate
    assert metrics["usage"] == estimate
    (step,) = metrics["steps"]
    assert step["usage"] == estimate
    assert step["ttftMs"] == 500.0
    assert step["decodeMs"] == 200.0  # first to last token, not to the stop
    assert step["genTotalMs"] == 700.0
    assert "contextSize" not in metrics  # no input known: the gauge keeps the last known


async def test_a_stopped_step_keeps_the_usage_the_provider_reported():
    paused, never = asyncio.Event(), asyncio.Event()
    turn = Turn(
        [
            [
                TextDelta("done"),
                UsageReport(Usage(100, 7)),
                Signal(paused),
                Wait(never),
            ]
        ]
    )
    task = turn.start()
    await asyncio.wait_for(paused.wait(), GUARD_SECONDS)
    turn.runner.abort()
    metrics = await task

    assert metrics["usage"] == {"inputTokens": 100, "outputTokens": 7}
    assert metrics["contextSize"] == 107


async def test_a_step_failed_mid_stream_counts_its_tokens_up_to_the_last_one():
    turn = Turn(
        [
            [
                TextDelta("a", tokens=3),
                Tick(0.3),
                TextDelta("b", tokens=3),
                Tick(30.0),  # silence until the read timeout
                ProviderError("the provider timed out", code="timeout", retryable=True),
            ]
        ]
    )
    metrics = await turn.run()

    assert metrics["finishReason"] == "error"
    assert metrics["usage"] == {"inputTokens": 0, "outputTokens": 6, "estimated": True}
    assert metrics["steps"][0]["decodeMs"] == 300.0

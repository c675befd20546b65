"""One step: how the stream becomes the assistant message, and the step's timing."""

from __future__ import annotations

from chat.runtime import (
    Finish,
    Message,
    PromptProgress,
    ReasoningDelta,
    TextDelta,
    ToolCallReady,
    Usage,
    UsageReport,
)
from tests.chat.runtime.fakes import Tick, Turn, call_chunk, text


async def test_deltas_merge_into_one_thinking_and_one_text_chunk_in_order():
    turn = Turn(
        [
            [
                ReasoningDelta("Let me "),
                ReasoningDelta("think."),
                TextDelta("Hel"),
                TextDelta("lo"),
                ToolCallReady("c1", "look", {"path": "a"}),
                Finish("tool-calls"),
            ],
            [TextDelta("bye"), Finish("stop")],
        ],
        tools=lambda bench: [bench.tool("look")],
    )

    await turn.run()

    assistant = turn.ports.steps()[0][0]
    assert assistant == Message(
        "assistant",
        [
            {"type": "thinking", "text": "Let me think."},
            text("Hello"),
            call_chunk("c1", "look", {"path": "a"}, turn.step(0)),
        ],
    )
    assert [e["delta"] for e in turn.ports.of("reasoning-delta")] == ["Let me ", "think."]


async def test_text_first_then_reasoning_keeps_first_appearance_order():
    turn = Turn(
        [
            [
                TextDelta("a"),
                ReasoningDelta("r1"),
                TextDelta("b"),
                ReasoningDelta("r2"),
                Finish("stop"),
            ]
        ]
    )

    await turn.run()

    (assistant,) = turn.ports.steps()[0]
    assert assistant.chunks == [text("ab"), {"type": "thinking", "text": "r1r2"}]


async def test_empty_deltas_emit_nothing_and_add_no_chunk():
    turn = Turn([[TextDelta(""), ReasoningDelta(""), TextDelta("x"), Finish("stop")]])

    await turn.run()

    assert [e["delta"] for e in turn.ports.of("text-delta")] == ["x"]
    assert turn.ports.of("reasoning-delta") == []
    assert turn.ports.steps()[0][0].chunks == [text("x")]


async def test_step_timing_from_the_monotonic_clock():
    turn = Turn(
        [
            [
                Tick(0.125),  # waiting for the first token
                ReasoningDelta("hm"),
                Tick(0.5),
                TextDelta("answer"),
                Tick(0.25),
                UsageReport(Usage(10, 4)),
                Tick(0.125),
                Finish("stop"),
            ]
        ]
    )

    metrics = await turn.run()

    complete = turn.ports.of("step-complete")[0]
    assert complete["stepId"] == turn.step(0)
    assert complete["ttftMs"] == 125.0
    assert complete["decodeMs"] == 875.0
    assert complete["genTotalMs"] == 1000.0
    (step,) = metrics["steps"]
    assert {k: step[k] for k in ("ttftMs", "decodeMs", "genTotalMs")} == {
        "ttftMs": 125.0,
        "decodeMs": 875.0,
        "genTotalMs": 1000.0,
    }


async def test_first_token_is_the_first_non_empty_delta():
    turn = Turn(
        [[Tick(0.25), TextDelta(""), Tick(0.25), TextDelta("x"), Tick(0.5), Finish("stop")]]
    )

    await turn.run()

    complete = turn.ports.of("step-complete")[0]
    assert (complete["ttftMs"], complete["decodeMs"]) == (500.0, 500.0)


async def test_tool_time_is_excluded_from_step_timing():
    turn = Turn(
        [
            [Tick(0.25), TextDelta("calling"), Tick(0.25), ToolCallReady("c1", "slow", {})],
            [Tick(0.5), TextDelta("after"), Tick(0.5), Finish("stop")],
        ],
        tools=lambda bench: [bench.tool("slow", ticks=30.0)],
    )

    metrics = await turn.run()

    assert [s["genTotalMs"] for s in metrics["steps"]] == [500.0, 1000.0]
    assert [s["ttftMs"] for s in metrics["steps"]] == [250.0, 500.0]
    assert turn.ports.of("tool-result")[0]["durationMs"] == 30000.0
    assert turn.ports.of("done")[0]["durationMs"] == 31500.0


async def test_a_step_with_only_tool_calls_has_no_ttft_or_decode():
    turn = Turn(
        [[Tick(0.75), ToolCallReady("c1", "look", {}), Finish("tool-calls")], [Finish("stop")]],
        tools=lambda bench: [bench.tool("look")],
    )

    metrics = await turn.run()

    complete = turn.ports.of("step-complete")[0]
    assert "ttftMs" not in complete and "decodeMs" not in complete
    assert complete["genTotalMs"] == 750.0
    assert metrics["steps"][0] == {
        "stepId": turn.step(0),
        "usage": {"inputTokens": 0, "outputTokens": 0},
        "genTotalMs": 750.0,
    }


async def test_finish_reason_tool_calls_without_calls_ends_as_stop():
    turn = Turn([[TextDelta("odd"), Finish("tool-calls")]])

    await turn.run()

    assert turn.ports.of("done")[0]["reason"] == "stop"


async def test_step_without_usage_report_estimates_its_output_from_the_deltas():
    turn = Turn([[TextDelta("x"), TextDelta("yz", tokens=2), Finish("stop")]])

    metrics = await turn.run()

    done = turn.ports.of("done")[0]
    estimate = {"inputTokens": 0, "outputTokens": 3, "estimated": True}
    assert done["usage"] == estimate and "contextSize" not in done
    assert metrics["usage"] == estimate
    assert metrics["steps"][0]["usage"] == estimate
    assert "contextSize" not in metrics


async def test_step_without_any_output_has_no_usage_on_done():
    turn = Turn([[Finish("stop")]])

    metrics = await turn.run()

    assert "usage" not in turn.ports.of("done")[0]
    assert metrics["usage"] == {"inputTokens": 0, "outputTokens": 0}


async def test_prompt_progress_is_relayed_with_the_step_id():
    turn = Turn(
        [[PromptProgress(0, 1500), PromptProgress(512, 1500), TextDelta("x"), Finish("stop")]]
    )

    await turn.run()

    progress = [(e["stepId"], e["done"], e["total"]) for e in turn.ports.of("prompt-progress")]
    step = turn.ports.of("step-complete")[0]["stepId"]
    assert progress == [(step, 0, 1500), (step, 512, 1500)]
    assert turn.ports.index("prompt-progress") < turn.ports.index("text-delta")

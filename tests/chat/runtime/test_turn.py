"""A whole turn through TurnRunner: event order, persistence, metrics, steering, max-steps."""

from __future__ import annotations

from chat.runtime import (
    Finish,
    Message,
    StatusChange,
    TextDelta,
    ToolCallReady,
    Usage,
    UsageReport,
    run_turn,
)
from tests.chat.runtime.fakes import (
    CONVERSATION_ID,
    TURN_ID,
    Tick,
    Turn,
    call_chunk,
    result_chunk,
    text,
)


def plain_script(*deltas: str, usage: Usage | None = None, reason: str = "stop"):
    return [
        *(TextDelta(d) for d in deltas),
        UsageReport(usage or Usage(10, 3)),
        Finish(reason),
    ]


async def test_plain_text_turn_emits_events_in_order():
    turn = Turn([plain_script("Hel", "lo", "!")], prompt="hi there")

    await turn.run()

    assert turn.ports.types() == [
        "user-message",
        "turn-start",
        "text-delta",
        "text-delta",
        "text-delta",
        "usage",
        "step-complete",
        "done",
        "turn-sealed",
    ]
    assert turn.ports.events[0]["text"] == "hi there"
    assert [e["delta"] for e in turn.ports.of("text-delta")] == ["Hel", "lo", "!"]
    assert turn.ports.of("usage")[0]["usage"] == {"inputTokens": 10, "outputTokens": 3}
    assert turn.ports.of("usage")[0]["stepId"] == turn.step(0)
    assert turn.ports.of("done")[0]["reason"] == "stop"


async def test_every_event_carries_type_conversation_and_turn():
    turn = Turn([[StatusChange("queued"), StatusChange("active"), *plain_script("ok")]])

    await turn.run()

    for event in turn.ports.events:
        assert event["conversationId"] == CONVERSATION_ID
        if event["type"] == "status":
            assert "turnId" not in event  # status is about the conversation, not the turn
        else:
            assert event["turnId"] == TURN_ID
    assert [e["status"] for e in turn.ports.of("status")] == ["queued", "active"]


async def test_user_message_is_persisted_before_the_step_and_step_in_one_transaction():
    turn = Turn([plain_script("Hello")], prompt="hi")

    await turn.run()

    user, step = turn.ports.transactions
    assert user.kind == "user"
    assert user.messages == [Message("user", [text("hi")])]
    # Committed before the provider streamed anything: it gets seqs before step 0.
    assert user.at_event <= turn.ports.index("text-delta")
    assert step.kind == "step"
    assert step.messages == [Message("assistant", [text("Hello")])]
    assert step.at_event <= turn.ports.index("done")


async def test_run_turn_returns_the_sealed_metrics():
    turn = Turn([plain_script("x")])

    metrics = await run_turn(turn.config, turn.runner.ports)

    assert turn.ports.sealed == [metrics.to_wire()]
    assert metrics.finish_reason == "stop"


async def test_done_reason_is_the_last_steps_finish_reason():
    turn = Turn([plain_script("cut", reason="length")])

    await turn.run()

    assert turn.ports.of("done")[0]["reason"] == "length"
    assert turn.ports.sealed[0]["finishReason"] == "length"


def tool_step(*calls: ToolCallReady, usage: Usage, ticks: float = 0.0):
    return [Tick(ticks), *calls, UsageReport(usage), Finish("tool-calls")]


async def test_two_step_tool_turn():
    history = [
        Message("user", [text("earlier")]),
        Message("assistant", [text("sure"), {"type": "error", "message": "boom"}]),
    ]
    turn = Turn(
        [
            tool_step(
                ToolCallReady("c1", "look", {"q": 1}),
                ToolCallReady("c2", "look", {"q": 2}),
                usage=Usage(100, 20, cache_read_tokens=40),
                ticks=0.5,
            ),
            [
                Tick(0.25),
                TextDelta("done!"),
                Tick(0.75),
                UsageReport(Usage(180, 7)),
                Finish("stop"),
            ],
        ],
        tools=lambda bench: [bench.tool("look", ticks=2.0)],
        history=history,
        prompt="look twice",
    )

    metrics = await turn.run()
    events = turn.ports

    s0, s1 = turn.step(0), turn.step(1)
    calls = events.of("tool-call")
    assert [(c["stepId"], c["toolCallId"], c["input"]) for c in calls] == [
        (s0, "c1", {"q": 1}),
        (s0, "c2", {"q": 2}),
    ]
    assert all(c["toolName"] == "look" for c in calls)
    step0_complete = events.index("step-complete", stepId=s0)
    for result in events.of("tool-result"):
        assert result["stepId"] == s0
        assert events.events.index(result) > step0_complete
    assert events.index("step-complete", stepId=s1) > events.index("tool-result", toolCallId="c2")

    # Step 1 is fed the reconciled history: old error chunk gone, this turn's calls and results.
    step1_request = turn.provider.requests[1]
    assert step1_request.messages == [
        Message("user", [text("earlier")]),
        Message("assistant", [text("sure")]),
        Message("user", [text("look twice")]),
        Message(
            "assistant",
            [call_chunk("c1", "look", {"q": 1}, s0), call_chunk("c2", "look", {"q": 2}, s0)],
        ),
        Message(
            "tool",
            [
                result_chunk("c1", "look", 'look {"q": 1}', s0),
                result_chunk("c2", "look", 'look {"q": 2}', s0),
            ],
        ),
    ]
    # One transaction per step: the assistant message and the tool message together.
    assert [[m.role for m in messages] for messages in events.steps()] == [
        ["assistant", "tool"],
        ["assistant"],
    ]
    assert events.steps()[0] == step1_request.messages[3:]

    done = events.of("done")[0]
    assert done["reason"] == "stop"
    assert done["usage"] == {"inputTokens": 280, "outputTokens": 27, "cacheReadTokens": 40}
    assert done["contextSize"] == 187
    assert metrics == {
        "turnId": TURN_ID,
        "model": "cred/model-x",
        "usage": {"inputTokens": 280, "outputTokens": 27, "cacheReadTokens": 40},
        "durationMs": done["durationMs"],
        "contextSize": 187,
        "finishReason": "stop",
        "steps": [
            {
                "stepId": s0,
                "usage": {"inputTokens": 100, "outputTokens": 20, "cacheReadTokens": 40},
                "genTotalMs": 500.0,
            },
            {
                "stepId": s1,
                "usage": {"inputTokens": 180, "outputTokens": 7},
                "ttftMs": 250.0,
                "decodeMs": 750.0,
                "genTotalMs": 1000.0,
            },
        ],
    }
    # 0.5 s + 2 × 2 s of tools (identical inputs differ, so both ran) + 1 s of step 1.
    assert done["durationMs"] == 5500.0
    assert turn.ports.sealed == [metrics]
    assert events.types()[-2:] == ["done", "turn-sealed"]


async def test_provider_request_carries_model_tools_and_options():
    turn = Turn(
        [plain_script("x")],
        tools=lambda bench: [bench.tool("look"), bench.tool("write", safe=False)],
        reasoning_effort="max",
        max_tokens=512,
    )

    await turn.run()

    (request,) = turn.provider.requests
    assert request.model == "model-x"
    assert [spec.name for spec in request.tools] == ["look", "write"]
    assert request.reasoning_effort == "max"
    assert request.max_tokens == 512
    assert request.messages == [Message("user", [text("hello")])]


async def test_steering_is_drained_at_a_tool_result_boundary():
    turn = Turn(
        [
            tool_step(ToolCallReady("c1", "look", {}), usage=Usage(5, 1)),
            plain_script("steered"),
        ],
        tools=lambda bench: [bench.tool("look")],
        queue=[["first", "second"]],
    )

    await turn.run()

    steering = turn.ports.of("steering")
    assert [e["text"] for e in steering] == ["first\n\nsecond"]
    at = turn.ports.index("steering")
    assert turn.ports.index("tool-result") < at < turn.ports.index("text-delta")
    assert turn.ports.drains == [turn.ports.index("tool-result") + 1]
    kinds = [(t.kind, [m.role for m in t.messages]) for t in turn.ports.transactions]
    assert kinds == [
        ("user", ["user"]),
        ("step", ["assistant", "tool"]),
        ("user", ["user"]),
        ("step", ["assistant"]),
    ]
    assert turn.ports.transactions[2].messages == [Message("user", [text("first\n\nsecond")])]
    assert turn.provider.requests[1].messages[-1] == Message("user", [text("first\n\nsecond")])


async def test_queue_is_not_drained_after_a_step_without_tool_calls():
    turn = Turn([plain_script("answer")], queue=[["later"]])

    await turn.run()

    assert turn.ports.drains == []
    assert turn.ports.of("steering") == []
    assert turn.ports.queue == [["later"]]


async def test_empty_queue_at_a_boundary_emits_no_steering():
    turn = Turn(
        [tool_step(ToolCallReady("c1", "look", {}), usage=Usage(1, 1)), plain_script("ok")],
        tools=lambda bench: [bench.tool("look")],
    )

    await turn.run()

    assert len(turn.ports.drains) == 1
    assert turn.ports.of("steering") == []
    assert len(turn.provider.requests) == 2


async def test_max_steps_ends_a_turn_that_always_calls_tools():
    scripts = [
        tool_step(ToolCallReady(f"c{i}", "look", {"i": i}), usage=Usage(1, 1)) for i in range(4)
    ]
    turn = Turn(scripts, tools=lambda bench: [bench.tool("look")], max_steps=3)

    metrics = await turn.run()

    assert len(turn.provider.requests) == 3
    assert turn.ports.of("done")[0]["reason"] == "max-steps"
    assert metrics["finishReason"] == "max-steps"
    assert [s["stepId"] for s in metrics["steps"]] == [turn.step(i) for i in range(3)]
    assert len(turn.ports.steps()) == 3
    assert turn.ports.types()[-1] == "turn-sealed"


async def test_failing_persist_step_still_ends_with_done_and_turn_sealed():
    turn = Turn([plain_script("lost")])
    turn.ports.fail_persist_step = RuntimeError("database is down")

    metrics = await turn.run()

    assert turn.ports.types()[-3:] == ["error", "done", "turn-sealed"]
    assert "database is down" in turn.ports.of("error")[0]["message"]
    assert turn.ports.of("done")[0]["reason"] == "error"
    assert metrics["finishReason"] == "error"
    assert turn.ports.sealed == [metrics]


async def test_failing_persist_user_still_ends_with_done_and_turn_sealed():
    turn = Turn([plain_script("never")])
    turn.ports.fail_persist_user = RuntimeError("disk full")

    await turn.run()

    assert turn.ports.types() == ["user-message", "turn-start", "error", "done", "turn-sealed"]
    assert turn.provider.requests == []
    assert turn.ports.sealed[0]["steps"] == []


async def test_failing_drain_still_ends_with_done_and_turn_sealed():
    turn = Turn(
        [tool_step(ToolCallReady("c1", "look", {}), usage=Usage(1, 1))],
        tools=lambda bench: [bench.tool("look")],
    )
    turn.ports.fail_drain = RuntimeError("queue unreachable")

    await turn.run()

    assert turn.ports.types()[-3:] == ["error", "done", "turn-sealed"]
    assert turn.ports.of("done")[0]["reason"] == "error"
    # The step itself was committed before the boundary failed.
    assert [[m.role for m in s] for s in turn.ports.steps()] == [["assistant", "tool"]]

"""Provider errors: retry with backoff before any content, give up into an error chunk."""

from __future__ import annotations

import logging

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
from tests.chat.runtime.fakes import CONVERSATION_ID, TURN_ID, Turn, text


def retryable(message: str, code: str | None = None) -> ProviderError:
    return ProviderError(message, code=code, retryable=True)


def assert_ended_with_error(turn: Turn, message: str, code: str | None = None) -> None:
    (error,) = turn.ports.of("error")
    assert error["message"] == message
    assert error.get("code") == code
    assert turn.ports.types()[-3:] == ["error", "done", "turn-sealed"]
    assert turn.ports.of("done")[0]["reason"] == "error"
    assert turn.ports.sealed[0]["finishReason"] == "error"


async def test_retryable_errors_are_retried_on_the_schedule_then_succeed():
    turn = Turn(
        [
            [retryable("rate limited", "429")],
            [retryable("connection reset")],
            [TextDelta("finally"), UsageReport(Usage(3, 1)), Finish("stop")],
        ],
        retry_delays=(1.5, 3.0, 6.0),
    )

    await turn.run()

    retries = turn.ports.of("provider-retry")
    assert [
        {k: v for k, v in r.items() if k not in ("type", "conversationId", "turnId")}
        for r in retries
    ] == [
        {"attempt": 1, "delayMs": 1500.0, "message": "rate limited", "code": "429"},
        {"attempt": 2, "delayMs": 3000.0, "message": "connection reset"},
    ]
    assert turn.sleep.delays == [1.5, 3.0]
    assert len(turn.provider.requests) == 3
    assert turn.provider.requests[2] == turn.provider.requests[0]  # the same request again
    assert turn.ports.of("done")[0]["reason"] == "stop"
    assert turn.ports.of("error") == []
    assert turn.ports.steps() == [[Message("assistant", [text("finally")])]]
    assert turn.ports.index("provider-retry") < turn.ports.index("text-delta")


async def test_give_up_when_the_schedule_is_exhausted():
    turn = Turn(
        [[retryable("bad gateway", "502")] for _ in range(3)],
        retry_delays=(0.5, 1.0),
    )

    await turn.run()

    assert turn.sleep.delays == [0.5, 1.0]
    assert [r["attempt"] for r in turn.ports.of("provider-retry")] == [1, 2]
    assert len(turn.provider.requests) == 3
    assert turn.ports.steps() == [
        [Message("assistant", [{"type": "error", "message": "bad gateway", "code": "502"}])]
    ]
    assert_ended_with_error(turn, "bad gateway", "502")


async def test_a_retryable_error_after_content_is_not_retried():
    turn = Turn(
        [[ReasoningDelta("hmm"), TextDelta("half an ans"), retryable("connection lost")]],
        retry_delays=(0.5,),
    )

    await turn.run()

    assert len(turn.provider.requests) == 1
    assert turn.sleep.delays == []
    assert turn.ports.of("provider-retry") == []
    # The error chunk is appended to the assistant message, after the partial content.
    assert turn.ports.steps() == [
        [
            Message(
                "assistant",
                [
                    {"type": "thinking", "text": "hmm"},
                    text("half an ans"),
                    {"type": "error", "message": "connection lost"},
                ],
            )
        ]
    ]
    assert_ended_with_error(turn, "connection lost")


async def test_an_error_after_a_tool_call_drops_the_call_that_never_ran():
    turn = Turn(
        [[TextDelta("let me look"), ToolCallReady("c1", "look", {}), ProviderError("cut off")]],
        tools=lambda bench: [bench.tool("look")],
    )

    await turn.run()

    assert turn.tools["look"].runs == []
    assert turn.ports.steps() == [
        [Message("assistant", [text("let me look"), {"type": "error", "message": "cut off"}])]
    ]
    assert_ended_with_error(turn, "cut off")


async def test_a_non_retryable_error_is_not_retried():
    turn = Turn([[ProviderError("invalid request", code="400")]], retry_delays=(0.5,))

    await turn.run()

    assert len(turn.provider.requests) == 1
    assert turn.sleep.delays == []
    assert turn.ports.of("provider-retry") == []
    assert_ended_with_error(turn, "invalid request", "400")


async def test_a_generic_exception_from_the_provider_is_not_retryable():
    turn = Turn([[RuntimeError("socket exploded")]], retry_delays=(0.5,))

    await turn.run()

    assert len(turn.provider.requests) == 1
    assert turn.sleep.delays == []
    assert_ended_with_error(turn, "provider failed: socket exploded")


async def test_a_usage_report_is_not_content_so_the_error_is_still_retried():
    turn = Turn(
        [
            [UsageReport(Usage(5, 0)), retryable("overloaded")],
            [TextDelta("ok"), UsageReport(Usage(5, 1)), Finish("stop")],
        ],
        retry_delays=(0.5,),
    )

    await turn.run()

    assert turn.sleep.delays == [0.5]
    assert turn.ports.of("done")[0]["usage"] == {"inputTokens": 5, "outputTokens": 1}


async def test_error_in_a_later_step_keeps_the_earlier_steps():
    turn = Turn(
        [
            [ToolCallReady("c1", "look", {}), Finish("tool-calls")],
            [ProviderError("context too long", code="400")],
        ],
        tools=lambda bench: [bench.tool("look")],
    )

    await turn.run()

    roles = [[m.role for m in s] for s in turn.ports.steps()]
    assert roles == [["assistant", "tool"], ["assistant"]]
    assert turn.ports.steps()[1][0].chunks == [
        {"type": "error", "message": "context too long", "code": "400"}
    ]
    assert_ended_with_error(turn, "context too long", "400")


async def test_retries_recoveries_and_failures_are_logged_with_ids_and_without_text(caplog):
    caplog.set_level(logging.INFO, logger="chat.runtime")
    recovered = Turn(
        [[retryable("HTTP 500: upstream broke", "500")], [TextDelta("fine"), Finish("stop")]],
        retry_delays=(0.1,),
    )
    await recovered.run()
    failed = Turn([[ProviderError("HTTP 400: bad request", code="400")]])
    await failed.run()

    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    ids = f"conversation {CONVERSATION_ID} turn {TURN_ID} step 0"
    assert lines == [
        (
            logging.WARNING,
            f"{ids}: provider failed (500): HTTP 500: upstream broke; retry 1 in 0.1s",
        ),
        (logging.WARNING, f"{ids}: the provider recovered after 1 retries"),
        (logging.ERROR, f"{ids}: provider failed (400): HTTP 400: bad request; not retryable"),
    ]
    prompt = recovered.runner.config.prompt
    assert prompt and not any(prompt in message for _, message in lines)

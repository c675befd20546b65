"""reconcile: the history as it is fed to a provider (docs/protocol.md#4-the-turn)."""

from __future__ import annotations

from chat.runtime import INTERRUPTED_RESULT, Message, reconcile
from tests.chat.runtime.fakes import call_chunk, result_chunk, text

S0 = "turn-1-aaaaaa#0"


def error(message: str) -> dict:
    return {"type": "error", "message": message, "code": "500"}


def test_error_chunks_are_dropped():
    history = [
        Message("user", [text("hi")]),
        Message("assistant", [text("partial"), error("gave up")]),
    ]

    assert reconcile(history) == [
        Message("user", [text("hi")]),
        Message("assistant", [text("partial")]),
    ]


def test_assistant_messages_left_empty_are_dropped():
    history = [
        Message("user", [text("hi")]),
        Message("assistant", [error("gave up")]),
        Message("assistant", []),
        Message("user", [text("again")]),
    ]

    assert reconcile(history) == [
        Message("user", [text("hi")]),
        Message("user", [text("again")]),
    ]


def test_a_tool_call_without_result_gets_the_interrupted_result():
    history = [
        Message("user", [text("go")]),
        Message(
            "assistant",
            [call_chunk("c1", "look", {}, S0), call_chunk("c2", "run_shell", {"command": "x"}, S0)],
        ),
        Message("tool", [result_chunk("c1", "look", "seen", S0)]),
    ]

    out = reconcile(history)

    assert INTERRUPTED_RESULT == "interrupted: tool execution did not complete"
    assert out == [
        Message("user", [text("go")]),
        history[1],
        # One tool message: the synthetic result joins the real one, still after the calls.
        Message(
            "tool",
            [
                result_chunk("c2", "run_shell", INTERRUPTED_RESULT, S0, is_error=True),
                result_chunk("c1", "look", "seen", S0),
            ],
        ),
    ]


def test_the_synthetic_result_carries_the_calls_step_id_only_when_it_has_one():
    with_step = call_chunk("c1", "look", {}, S0)
    without_step = {"type": "tool-call", "toolCallId": "c2", "toolName": "look", "input": {}}
    history = [Message("assistant", [with_step, without_step])]

    (_, tool) = reconcile(history)

    assert tool.role == "tool"
    assert tool.chunks[0]["stepId"] == S0
    assert "stepId" not in tool.chunks[1]
    assert all(c["isError"] and c["content"] == INTERRUPTED_RESULT for c in tool.chunks)


def test_an_interrupted_call_at_the_end_of_history_is_answered():
    history = [Message("user", [text("go")]), Message("assistant", [call_chunk("c9", "w", {}, S0)])]

    out = reconcile(history)

    assert out[-1] == Message(
        "tool", [result_chunk("c9", "w", INTERRUPTED_RESULT, S0, is_error=True)]
    )


def test_a_consistent_history_is_unchanged_and_not_mutated():
    history = [
        Message("system", [{"type": "system", "text": "be brief"}]),
        Message("user", [text("go")]),
        Message("assistant", [{"type": "thinking", "text": "t"}, call_chunk("c1", "look", {}, S0)]),
        Message("tool", [result_chunk("c1", "look", "ok", S0)]),
        Message("assistant", [text("done")]),
    ]
    snapshot = [Message(m.role, list(m.chunks)) for m in history]

    assert reconcile(history) == snapshot
    assert history == snapshot
    assert reconcile([Message("assistant", [error("x")])]) == []
    assert history[1].chunks == [text("go")]

"""Compaction and the context budget inside a turn (docs/protocol.md#24-compaction, #410-the-context-budget).

Windows here are small and messages long, so the runtime's estimate (about four characters a
token) decides; ``count_tokens`` stands in for a provider that counts exactly.
"""

from __future__ import annotations

import asyncio

from chat.runtime import (
    Finish,
    Message,
    ProviderError,
    TextDelta,
    ToolCallReady,
    Usage,
    UsageReport,
)
from chat.runtime.context import SUMMARY_INTRO, SUMMARY_SYSTEM, summary_message
from tests.chat.runtime.fakes import (
    GUARD_SECONDS,
    TURN_ID,
    Signal,
    Turn,
    Wait,
    stored,
    text,
)

WINDOW = {"context_window": 1000, "compact_threshold": 0.4, "keep_messages": 2}


SUMMARY_USAGE, ANSWER_USAGE = Usage(300, 20), Usage(200, 5)


def summary_script(summary: str = "the summary", usage: Usage = SUMMARY_USAGE):
    return [TextDelta(summary), UsageReport(usage), Finish("stop")]


def answer_script(value: str = "answer", usage: Usage = ANSWER_USAGE):
    return [TextDelta(value), UsageReport(usage), Finish("stop")]


def long_history() -> list[Message]:
    return stored(
        [
            Message("user", [text("a" * 400)]),
            Message("assistant", [text("b" * 400)]),
            Message("user", [text("c" * 400)]),
            Message("assistant", [text("d" * 400)]),
        ]
    )


def compaction_chunks(turn: Turn) -> list[dict]:
    return [
        chunk
        for messages in turn.ports.steps()
        for message in messages
        for chunk in message.chunks
        if chunk["type"] == "compaction"
    ]


async def test_a_turn_over_the_threshold_compacts_before_its_first_call():
    history = long_history()
    turn = Turn([summary_script(), answer_script()], history=history, prompt="next", **WINDOW)

    metrics = await turn.run()

    assert turn.ports.types() == [
        "user-message",
        "turn-start",
        "compaction-start",
        "compaction-done",
        "text-delta",
        "usage",
        "step-complete",
        "done",
        "turn-sealed",
    ]
    start, done = turn.ports.of("compaction-start")[0], turn.ports.of("compaction-done")[0]
    assert start["stepId"] == done["stepId"] == f"{TURN_ID}#c0"
    assert start["trigger"] == "auto" and start["messages"] == 3
    assert done["summary"] == "the summary" and done["usage"] == Usage(300, 20).to_wire()
    assert (done["replacedMessages"], done["keptMessages"], done["upToSeq"]) == (3, 2, 3)

    summary_request, answer_request = turn.provider.requests
    assert not summary_request.tools  # the summary is written without tools
    assert summary_request.messages[0].chunks[0]["text"] == SUMMARY_SYSTEM
    prompt = summary_request.messages[1].chunks[0]["text"]
    assert "User: " + "a" * 400 in prompt and "Assistant: " + "b" * 400 in prompt
    assert "d" * 400 not in prompt  # kept, not summarized
    assert summary_request.max_tokens == 200  # a fifth of the window
    assert answer_request.messages == [
        summary_message("the summary"),
        Message("assistant", [text("d" * 400)]),
        Message("user", [text("next")]),
    ]

    user, compacted, answered = turn.ports.transactions
    assert user.kind == "user" and compacted.kind == "step" and answered.kind == "step"
    (chunk,) = compaction_chunks(turn)
    assert chunk == {
        "type": "compaction",
        "summary": "the summary",
        "upToSeq": 3,
        "replacedMessages": 3,
        "keptMessages": 2,
        "trigger": "auto",
        "stepId": f"{TURN_ID}#c0",
    }
    assert compacted.messages[0].role == "system"
    compaction_step, step = metrics["steps"]
    assert compaction_step["kind"] == "compaction" and "kind" not in step
    assert compaction_step["usage"] == {"inputTokens": 300, "outputTokens": 20}
    assert metrics["usage"] == {"inputTokens": 500, "outputTokens": 25}
    assert metrics["contextSize"] == 205  # the answering step, not the compaction


async def test_a_tool_loop_compacts_between_steps():
    scripts = [
        [ToolCallReady("c1", "look", {}), UsageReport(Usage(10, 3)), Finish("tool-calls")],
        summary_script("asked to look"),
        answer_script("seen"),
    ]
    turn = Turn(
        scripts,
        prompt="go",
        tools=lambda bench: [bench.tool("look", content="r" * 2000)],
        **WINDOW,
    )

    metrics = await turn.run()

    types = turn.ports.types()
    assert types.index("tool-result") < types.index("compaction-start") < types.index("done")
    assert turn.ports.of("compaction-start")[0]["messages"] == 1  # the prompt only
    last = turn.provider.requests[-1].messages
    assert last[0] == summary_message("asked to look")
    # The call and its result are kept together, after the summary.
    assert [m.role for m in last[1:]] == ["assistant", "tool"]
    assert metrics["finishReason"] == "stop"
    assert [s.get("kind", "step") for s in metrics["steps"]] == ["step", "compaction", "step"]


async def test_a_second_compaction_summarizes_the_first_summary():
    history = long_history()
    history.append(
        Message(
            "system",
            [{"type": "compaction", "summary": "OLD SUMMARY", "upToSeq": 2, "stepId": "x"}],
        )
    )
    history[-1].seq = 5
    later = stored([Message("user", [text("e" * 400)]), Message("assistant", [text("f" * 400)])])
    for offset, message in enumerate(later):
        message.seq = 6 + offset
    turn = Turn(
        [summary_script("NEW SUMMARY"), answer_script()],
        history=[*history, *later],
        prompt="next",
        **WINDOW,
    )

    await turn.run()

    prompt = turn.provider.requests[0].messages[1].chunks[0]["text"]
    assert "<earlier-summary>\nOLD SUMMARY\n</earlier-summary>" in prompt
    # Summarized: the messages the old summary kept (c, d) and the later user message.
    assert "c" * 400 in prompt and "d" * 400 in prompt and "e" * 400 in prompt
    assert "a" * 400 not in prompt  # already inside OLD SUMMARY
    (chunk,) = compaction_chunks(turn)
    assert chunk["upToSeq"] == 6 and chunk["replacedMessages"] == 3
    sent = turn.provider.requests[1].messages
    assert sum(1 for m in sent if SUMMARY_INTRO in m.chunks[0].get("text", "")) == 1
    assert "NEW SUMMARY" in sent[0].chunks[0]["text"] and "OLD" not in str(sent)


async def test_with_compaction_off_a_request_over_the_window_is_refused_before_any_call():
    history = stored([Message("user", [text("x" * 5000)]), Message("assistant", [text("ok")])])
    turn = Turn([], history=history, prompt="more", **{**WINDOW, "compact_threshold": 0})

    metrics = await turn.run()

    assert turn.provider.requests == []
    assert turn.ports.types() == ["user-message", "turn-start", "error", "done", "turn-sealed"]
    error = turn.ports.of("error")[0]
    assert error["code"] == "context-overflow"
    assert "1,000-token context window of cred/model-x" in error["message"]
    assert "automatic compaction is off" in error["message"]
    assert "compact the conversation" in error["message"]
    stored_error = turn.ports.steps()[-1][0]
    assert stored_error == Message(
        "assistant", [{"type": "error", "message": error["message"], "code": "context-overflow"}]
    )
    assert metrics["finishReason"] == "error" and metrics["steps"] == []


async def test_an_empty_summary_fails_the_compaction_and_a_turn_that_does_not_fit():
    history = stored([Message("user", [text("x" * 3000)]), Message("assistant", [text("ok")])])
    history += stored([Message("user", [text("y" * 1000)])])
    history[-1].seq = 3
    turn = Turn([summary_script("   ")], history=history, prompt="more", **WINDOW)

    metrics = await turn.run()

    failed = turn.ports.of("compaction-failed")[0]
    assert failed["code"] == "empty-summary"
    assert failed["message"] == "the model returned an empty summary"
    assert failed["usage"] == {"inputTokens": 300, "outputTokens": 20}
    error = turn.ports.of("error")[0]
    assert "automatic compaction failed: the model returned an empty summary" in error["message"]
    assert len(turn.provider.requests) == 1  # the summary's; the answer was never asked for
    assert compaction_chunks(turn) == []
    assert metrics["finishReason"] == "error"
    assert metrics["steps"][0]["kind"] == "compaction"  # its call still counts


async def test_a_failed_compaction_does_not_stop_a_turn_that_still_fits():
    error = ProviderError("HTTP 400: no", code="http-400")
    turn = Turn([[error], answer_script("fine")], history=long_history(), **WINDOW)

    metrics = await turn.run()

    failed = turn.ports.of("compaction-failed")[0]
    assert (failed["code"], failed["message"]) == ("http-400", "HTTP 400: no")
    assert metrics["finishReason"] == "stop"
    assert turn.ports.of("error") == []
    assert "".join(e["delta"] for e in turn.ports.of("text-delta")) == "fine"


async def test_stop_during_compaction_writes_nothing_and_ends_aborted():
    paused, never = asyncio.Event(), asyncio.Event()
    turn = Turn(
        [[TextDelta("half a summ"), Signal(paused), Wait(never)]],
        history=long_history(),
        **WINDOW,
    )
    task = turn.start()
    await asyncio.wait_for(paused.wait(), GUARD_SECONDS)

    turn.runner.abort()
    metrics = await task

    failed = turn.ports.of("compaction-failed")[0]
    assert failed["code"] == "aborted"
    assert turn.ports.types()[-3:] == ["compaction-failed", "done", "turn-sealed"]
    assert metrics["finishReason"] == "aborted"
    assert [t.kind for t in turn.ports.transactions] == ["user"]  # no summary, no step
    assert turn.provider.closed == 1


async def test_a_manual_compaction_turn_compacts_and_seals():
    turn = Turn([summary_script("all of it")], history=long_history(), kind="compaction",
                **{**WINDOW, "compact_threshold": 0})  # fmt: skip

    metrics = await turn.run()

    assert turn.ports.types() == [
        "compaction-start",
        "compaction-done",
        "done",
        "turn-sealed",
    ]
    assert turn.ports.of("compaction-start")[0]["trigger"] == "manual"
    done = turn.ports.of("done")[0]
    assert done["reason"] == "compacted"
    assert done["contextSize"] == turn.ports.of("compaction-done")[0]["contextSize"] > 0
    assert metrics["kind"] == "compaction" and metrics["finishReason"] == "compacted"
    assert [s["kind"] for s in metrics["steps"]] == ["compaction"]
    (chunk,) = compaction_chunks(turn)
    assert chunk["trigger"] == "manual" and chunk["replacedMessages"] == 2


async def test_a_manual_compaction_of_a_short_conversation_says_so():
    history = stored([Message("user", [text("hi")]), Message("assistant", [text("hello")])])
    turn = Turn([], history=history, kind="compaction", **WINDOW)

    metrics = await turn.run()

    failed = turn.ports.of("compaction-failed")[0]
    assert failed["code"] == "too-short"
    assert "too short to compact" in failed["message"]
    assert turn.provider.requests == []
    assert metrics["finishReason"] == "error" and turn.ports.transactions == []


async def test_an_exact_token_count_decides_over_the_estimate():
    counted: list[int] = []

    async def count(request):
        counted.append(len(request.tools))
        # The summary request is small; every other request is nearly the window.
        return 50 if request.messages[0].chunks[0].get("text") == SUMMARY_SYSTEM else 800

    history = stored([Message("user", [text("a")]), Message("assistant", [text("b")])] * 2)
    turn = Turn([summary_script(), answer_script()], history=history, count_tokens=count,
                tools=lambda bench: [bench.tool("look")], **{**WINDOW, "keep_messages": 1})  # fmt: skip

    await turn.run()

    assert turn.ports.of("compaction-start"), "a short history the counter says is long"
    assert counted[0] == 1  # the tools count too
    # After compaction the counter still says 800 of 1000: that fits (reserve 125), so on.
    assert turn.ports.of("done")[0]["reason"] == "stop"


async def test_remote_estimates_start_from_the_last_measured_request():
    # The last turn measured 900 tokens for this short history: the estimate starts there.
    history = stored([Message("user", [text("a")]), Message("assistant", [text("b")])] * 2)
    turn = Turn([summary_script(), answer_script()], history=history, context_size=900,
                **{**WINDOW, "keep_messages": 1})  # fmt: skip

    await turn.run()

    assert turn.ports.of("compaction-start")
    same = Turn([answer_script()], history=stored([Message("user", [text("a")])] * 4),
                **{**WINDOW, "keep_messages": 1})  # fmt: skip
    await same.run()
    assert same.ports.of("compaction-start") == []  # without the measure it looks small


async def test_a_step_that_reported_usage_is_the_base_of_the_next_estimate():
    scripts = [
        [ToolCallReady("c1", "look", {}), UsageReport(Usage(950, 3)), Finish("tool-calls")],
        summary_script(),
        answer_script(),
    ]
    turn = Turn(scripts, prompt="go", tools=lambda bench: [bench.tool("look", content="ok")],
                **{**WINDOW, "keep_messages": 1})  # fmt: skip

    await turn.run()

    assert turn.ports.of("compaction-start"), "950 measured tokens are over the threshold"


async def test_a_continuation_turn_marks_its_prompt():
    turn = Turn([answer_script()], prompt="Continue.", continuation=True)

    await turn.run()

    assert turn.ports.events[0] == {
        "type": "user-message",
        "conversationId": turn.config.conversation_id,
        "turnId": TURN_ID,
        "text": "Continue.",
        "continuation": True,
    }
    (user,) = turn.ports.transactions[0].messages
    assert user.chunks == [{"type": "text", "text": "Continue.", "continuation": True}]

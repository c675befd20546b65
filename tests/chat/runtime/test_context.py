"""The context module's rules: where a compaction cuts, what a provider is sent, the budget."""

from __future__ import annotations

import pytest

from chat.runtime import Message
from chat.runtime.context import (
    SUMMARY_INTRO,
    Budget,
    cut_index,
    effective,
    estimate_message_tokens,
    overflow_message,
    request_messages,
    transcript,
)
from tests.chat.runtime.fakes import call_chunk, result_chunk, stored, text


def user(value: str) -> Message:
    return Message("user", [text(value)])


def answer(value: str) -> Message:
    return Message("assistant", [text(value)])


def call(call_id: str) -> Message:
    return Message("assistant", [call_chunk(call_id, "look", {"q": call_id}, "T#0")])


def result(call_id: str) -> Message:
    return Message("tool", [result_chunk(call_id, "look", f"seen {call_id}", "T#0")])


def compaction(summary: str, up_to_seq: int) -> Message:
    chunk = {"type": "compaction", "summary": summary, "upToSeq": up_to_seq}
    return Message("system", [chunk])


def roles(messages: list[Message]) -> str:
    return " ".join(m.role[0] for m in messages)


# ---------------------------------------------------------------- the cut


def test_the_cut_keeps_the_last_n_messages():
    messages = [user("a"), answer("b"), user("c"), answer("d"), user("e"), answer("f")]
    assert cut_index(messages, keep=2) == 4
    assert cut_index(messages, keep=5) == 1


def test_nothing_to_summarize_when_the_conversation_has_at_most_n_messages():
    messages = [user("a"), answer("b"), user("c")]
    assert cut_index(messages, keep=3) == 0
    assert cut_index(messages, keep=10) == 0
    assert cut_index([user("only")], keep=0) == 0


@pytest.mark.parametrize("keep", range(1, 8))
def test_the_cut_never_parts_a_tool_call_from_its_result(keep):
    # u a(call) t(result) a(call) t(result) a u a
    messages = [
        user("q"),
        call("1"),
        result("1"),
        call("2"),
        result("2"),
        answer("done"),
        user("more"),
        answer("ok"),
    ]
    index = cut_index(messages, keep=keep)
    assert 0 < index < len(messages)
    assert messages[index].role != "tool"
    summarized = {c["toolCallId"] for m in messages[:index] for c in m.chunks if "toolCallId" in c}
    kept = {c["toolCallId"] for m in messages[index:] for c in m.chunks if "toolCallId" in c}
    assert not summarized & kept  # each call is on the same side as its result


def test_a_kept_part_starting_at_a_result_moves_to_the_next_boundary():
    messages = [user("q"), call("1"), result("1"), answer("done")]
    # Keeping 2 would start at the tool result: the cut moves after it (keeps 1 message).
    assert cut_index(messages, keep=2) == 3


def test_when_no_later_boundary_exists_the_last_one_is_taken():
    # Between steps of a tool loop: the newest message is a tool result.
    messages = [user("q"), call("1"), result("1"), call("2"), result("2")]
    assert cut_index(messages, keep=1) == 3  # keeps the last call and its result


def test_the_kept_part_shrinks_to_its_token_budget_but_keeps_the_last_message():
    messages = [user("x" * 400), answer("y" * 400), user("z" * 400), answer("w" * 40)]
    per = [estimate_message_tokens(m) for m in messages]
    assert cut_index(messages, keep=3) == 1
    assert cut_index(messages, keep=3, keep_tokens=per[2] + per[3]) == 2
    assert cut_index(messages, keep=3, keep_tokens=per[3]) == 3
    assert cut_index(messages, keep=3, keep_tokens=1) == 3  # never the last message itself


# ---------------------------------------------------------------- what a provider is sent


def test_without_compaction_the_request_is_the_history():
    history = stored([user("a"), answer("b")])
    assert request_messages(history) == history


def test_the_request_is_system_prompt_summary_then_the_messages_after_it():
    history = stored([user("a"), answer("b"), user("c"), answer("d")])
    history.append(compaction("a and b happened", up_to_seq=history[1].seq))
    history += [user("e")]
    history[-1].seq = 99

    sent = request_messages(history, system_prompt="be brief")

    assert sent[0] == Message("system", [{"type": "system", "text": "be brief"}])
    assert sent[1].role == "user"
    assert sent[1].chunks[0]["text"] == f"{SUMMARY_INTRO}\n\na and b happened"
    assert sent[2:] == [user("c"), answer("d"), user("e")]


def test_a_summary_of_a_summary_replaces_the_older_one():
    history = stored([user("a"), answer("b"), user("c"), answer("d"), user("e"), answer("f")])
    first = compaction("first", up_to_seq=history[1].seq)
    second = compaction("first, then c and d", up_to_seq=history[3].seq)
    log = [*history[:4], first, *history[4:], second]

    view = effective(log)

    assert view.summary == "first, then c and d"
    assert view.messages == [user("e"), answer("f")]
    sent = request_messages(log)
    assert "first, then c and d" in sent[0].chunks[0]["text"]
    assert sum(1 for m in sent if SUMMARY_INTRO in str(m.chunks)) == 1


def test_messages_not_stored_yet_are_always_after_the_summary():
    history = stored([user("a"), answer("b")])
    history.append(compaction("s", up_to_seq=history[-1].seq))
    fresh = user("new")  # no seq: persisted after the compaction
    assert effective([*history, fresh]).messages == [fresh]


def test_the_transcript_names_speakers_tools_and_clips_long_results():
    long_result = Message("tool", [result_chunk("1", "look", "r" * 5000, "T#0", is_error=True)])
    text_ = transcript([user("hi"), call("1"), long_result, answer("bye")])
    assert text_.startswith('User: hi\n\nAssistant called the tool look with {"q": "1"}')
    assert "Tool look returned (failed): " in text_
    assert "characters left out" in text_ and len(text_) < 2600
    assert text_.endswith("Assistant: bye")


# ---------------------------------------------------------------- the budget


def test_the_budget_of_an_unknown_window_lets_everything_through():
    budget = Budget.for_model(None, 0.85, None)
    assert budget.fits(10**9) and not budget.wants_compaction(10**9)
    assert budget.keep_tokens() is None


def test_the_budget_reserves_room_for_the_answer_and_asks_for_compaction_at_the_threshold():
    budget = Budget.for_model(2048, 0.85, None)
    assert budget.reserve == 256
    assert budget.fits(2048 - 256) and not budget.fits(2048 - 255)
    assert not budget.wants_compaction(int(0.85 * 2048) - 1)
    assert budget.wants_compaction(int(0.85 * 2048) + 1)
    assert Budget.for_model(2048, 0.85, 100).reserve == 100
    assert Budget.for_model(2048, 0.85, 5000).reserve == 1024  # at most half the window


def test_what_a_compaction_keeps_and_writes_leaves_room_for_the_fixed_part():
    budget = Budget.for_model(2048, 0.85, 200)
    assert budget.keep_tokens() == int(2048 * 0.4)
    # 948 tokens of tool descriptions go with every request: shares of the rest.
    assert budget.keep_tokens(948) == int(1100 * 0.4)
    assert budget.summary_tokens(1024, 948) == 220 and budget.summary_tokens(100, 948) == 100
    assert Budget.for_model(2048, 0.3, None).keep_tokens() == int(2048 * 0.15)  # half of 0.3


def test_threshold_zero_never_asks_for_compaction():
    budget = Budget.for_model(1000, 0.0, None)
    assert not budget.wants_compaction(5000)
    assert not budget.fits(5000)


def test_the_overflow_message_names_size_window_and_the_way_out():
    message = overflow_message(9873, Budget.for_model(8192, 0.85, None), "local/smol", "off")
    assert "9,873 tokens" in message and "8,192-token context window of local/smol" in message
    assert "compact the conversation" in message and "larger context window" in message

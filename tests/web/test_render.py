"""chat.render (safe Markdown) and chat.transcript (live and stored turns render alike)."""

from __future__ import annotations

from django.template.loader import render_to_string

from chat.render import markdown_html
from chat.runtime import TurnMetrics
from chat.transcript import LiveTurn, id_prefixes, turns_from_history


def test_markdown_renders_and_highlights_code():
    html = markdown_html("# Title\n\n**bold** and `x`\n\n```python\ndef f():\n    return 1\n```")
    assert "<h1>Title</h1>" in html
    assert "<strong>bold</strong>" in html
    assert '<pre class="hl"><code class="language-python">' in html
    assert '<span class="hl-k">def</span>' in html


def test_unfinished_markdown_renders_while_streaming():
    assert markdown_html("```python\nprint(1").startswith('<pre class="hl">')
    assert markdown_html("Hello **wor") == "<p>Hello **wor</p>\n"


def test_model_html_is_escaped_and_dangerous_links_dropped():
    html = markdown_html(
        "<img src=x onerror=alert(1)><script>alert(2)</script> [a](javascript:alert(3)) "
        '<div hx-get="/x">y</div>'
    )
    assert "<script" not in html and "<img" not in html and "<div" not in html
    assert "&lt;script&gt;" in html
    assert 'href="javascript' not in html


def test_markdown_images_and_links_keep_only_safe_attributes(settings):
    settings.DISPATCH_IMAGE_ORIGINS = ["https://example.com"]  # others' images: a link to click
    html = markdown_html('![pic](https://example.com/p.png "t") [site](https://example.com)')
    assert '<img src="https://example.com/p.png" alt="pic" title="t">' in html
    assert 'rel="noopener noreferrer nofollow"' in html
    assert "onerror" not in markdown_html("![x](https://e.com/a.png)")


def test_id_prefixes_are_short_and_unique():
    prefixes = id_prefixes(["abcdef12", "abcdzz", "f00d", "xy"])
    assert prefixes == {"abcdef12": "abcde", "abcdzz": "abcdz", "f00d": "f00d", "xy": "xy"}


TURN = "turn-1-abcdef"
STEP0, STEP1 = f"{TURN}#0", f"{TURN}#1"
USAGE = {"inputTokens": 100, "outputTokens": 20}
EVENTS = [
    {"type": "user-message", "text": "list please"},
    {"type": "turn-start"},
    {"type": "reasoning-delta", "delta": "Let me "},
    {"type": "reasoning-delta", "delta": "look."},
    {"type": "tool-call", "stepId": STEP0, "toolCallId": "c1", "toolName": "list_files",
     "input": {}},
    {"type": "tool-call", "stepId": STEP0, "toolCallId": "c2", "toolName": "read_file",
     "input": {"path": "x"}},
    {"type": "usage", "stepId": STEP0, "usage": USAGE},
    {"type": "step-complete", "stepId": STEP0, "ttftMs": 10, "decodeMs": 1000, "genTotalMs": 1010},
    {"type": "tool-output", "toolCallId": "c1", "data": "a.txt\n", "stream": "stdout"},
    {"type": "tool-result", "stepId": STEP0, "toolCallId": "c1", "toolName": "list_files",
     "content": "a.txt", "isError": False, "durationMs": 3},
    {"type": "tool-result", "stepId": STEP0, "toolCallId": "c2", "toolName": "read_file",
     "content": "no such file", "isError": True, "durationMs": 2},
    {"type": "text-delta", "delta": "Found **a"},
    {"type": "text-delta", "delta": ".txt**"},
    {"type": "usage", "stepId": STEP1, "usage": USAGE},
    {"type": "step-complete", "stepId": STEP1, "ttftMs": 5, "decodeMs": 500, "genTotalMs": 505},
    {"type": "done", "reason": "stop", "durationMs": 1600, "contextSize": 120,
     "usage": {"inputTokens": 200, "outputTokens": 40}},
]  # fmt: skip
STORED = [
    (1, "user", {"type": "text", "text": "list please"}),
    (2, "assistant", {"type": "thinking", "text": "Let me look."}),
    (2, "assistant", {"type": "tool-call", "toolCallId": "c1", "toolName": "list_files",
                      "input": {}, "stepId": STEP0}),
    (2, "assistant", {"type": "tool-call", "toolCallId": "c2", "toolName": "read_file",
                      "input": {"path": "x"}, "stepId": STEP0}),
    (3, "tool", {"type": "tool-result", "toolCallId": "c1", "toolName": "list_files",
                 "content": "a.txt", "isError": False, "stepId": STEP0}),
    (3, "tool", {"type": "tool-result", "toolCallId": "c2", "toolName": "read_file",
                 "content": "no such file", "isError": True, "stepId": STEP0}),
    (4, "assistant", {"type": "text", "text": "Found **a.txt**"}),
]  # fmt: skip
METRICS = {
    "turnId": TURN,
    "usage": {"inputTokens": 200, "outputTokens": 40},
    "durationMs": 1600,
    "contextSize": 120,
    "finishReason": "stop",
    "steps": [
        {"stepId": STEP0, "usage": USAGE, "ttftMs": 10, "decodeMs": 1000, "genTotalMs": 1010},
        {"stepId": STEP1, "usage": USAGE, "ttftMs": 5, "decodeMs": 500, "genTotalMs": 505},
    ],
}


def _live_html() -> str:
    live = LiveTurn(TURN, number=1)
    for event in EVENTS:
        live.apply({**event, "conversationId": "c", "turnId": TURN})
    return render_to_string("chat/_turn.html", {"turn": live.view})


def _stored_html() -> str:
    rows = [{"turn_id": TURN, "message": m, "role": r, "chunk": c} for m, r, c in STORED]
    (turn,) = turns_from_history(rows, {TURN: TurnMetrics.from_wire(METRICS)}, {TURN: 1})
    return render_to_string("chat/_turn.html", {"turn": turn})


def test_a_live_turn_renders_like_the_same_turn_from_the_log():
    live, stored = _live_html(), _stored_html()
    # Streamed tool output is shown live; the log keeps only the result.
    live = live.replace(
        '<div class="tool-label">Output</div><pre class="tool-output">a.txt\n</pre>', ""
    )
    assert " ".join(live.split()) == " ".join(stored.split())


def test_the_rendered_turn_has_grouped_cards_thoughts_and_rows():
    html = _stored_html()
    assert html.count('class="tool-batch"') == 1
    assert "2 tool calls" in html
    assert 'class="tool-card error"' in html and 'class="tool-card ok"' in html
    assert "<summary>Thoughts</summary>" in html
    assert "step 1 · 120 tok · 20 tok/s · 1.0s" in html
    assert "turn 1 · 240 tok (200 in / 40 out) · 27 tok/s · 1.6s" in html
    assert "<strong>a.txt</strong>" in html


def test_live_thinking_and_retry_banner_while_pending():
    live = LiveTurn(TURN, number=3)
    live.apply({"type": "user-message", "text": "hi"})
    live.apply({"type": "provider-retry", "attempt": 2, "delayMs": 1500, "message": "503"})
    html = render_to_string("chat/_turn.html", {"turn": live.view})
    assert "Retrying (#2) in 1.5s…" in html
    live.apply({"type": "reasoning-delta", "delta": "hmm"})
    html = render_to_string("chat/_turn.html", {"turn": live.view})
    assert "Retrying" not in html
    assert "<summary>Thinking…</summary>" in html


def test_changes_name_only_what_moved_since_the_last_flush():
    live = LiveTurn(TURN, number=1)
    live.apply({"type": "user-message", "text": "hi"})
    new, appended, dirty, foot = live.take_changes()
    assert new and not foot
    live.apply({"type": "text-delta", "delta": "a"})
    new, appended, dirty, foot = live.take_changes()
    assert not new and [b.kind for b in appended] == ["step"] and dirty == []
    live.apply({"type": "text-delta", "delta": "b"})
    live.apply({"type": "text-delta", "delta": "c"})
    new, appended, dirty, foot = live.take_changes()
    assert appended == [] and len(dirty) == 1 and dirty[0].items[0].text == "abc"
    assert live.take_changes() == (False, [], [], False)


# ---------------------------------------------------------------- long conversations

C0 = f"{TURN}#c0"
COMPACTION_EVENTS = [
    {"type": "user-message", "text": "go on"},
    {"type": "turn-start"},
    {"type": "compaction-start", "stepId": C0, "trigger": "auto", "messages": 12},
    {"type": "compaction-done", "stepId": C0, "trigger": "auto", "seq": 30, "upToSeq": 27,
     "replacedMessages": 12, "keptMessages": 2, "summary": "They *planned* a trip.",
     "contextSize": 90, "usage": USAGE, "ttftMs": 5, "decodeMs": 95, "genTotalMs": 100},
    {"type": "text-delta", "delta": "Sure."},
    {"type": "usage", "stepId": STEP0, "usage": USAGE},
    {"type": "step-complete", "stepId": STEP0, "ttftMs": 5, "decodeMs": 95, "genTotalMs": 100},
    {"type": "done", "reason": "length", "durationMs": 300, "contextSize": 120,
     "usage": {"inputTokens": 200, "outputTokens": 40}},
]  # fmt: skip
COMPACTION_STORED = [
    (1, "user", {"type": "text", "text": "go on"}),
    (2, "system", {"type": "compaction", "summary": "They *planned* a trip.", "upToSeq": 27,
                   "replacedMessages": 12, "keptMessages": 2, "trigger": "auto", "stepId": C0}),
    (3, "assistant", {"type": "text", "text": "Sure."}),
]  # fmt: skip
COMPACTION_METRICS = {
    "turnId": TURN,
    "usage": {"inputTokens": 200, "outputTokens": 40},
    "durationMs": 300,
    "contextSize": 120,
    "finishReason": "length",
    "steps": [
        {"stepId": C0, "usage": USAGE, "ttftMs": 5, "decodeMs": 95, "genTotalMs": 100,
         "kind": "compaction"},
        {"stepId": STEP0, "usage": USAGE, "ttftMs": 5, "decodeMs": 95, "genTotalMs": 100},
    ],
}  # fmt: skip


def test_a_compaction_renders_the_same_live_and_from_the_log():
    live = LiveTurn(TURN, number=4)
    for event in COMPACTION_EVENTS:
        live.apply({**event, "conversationId": "c", "turnId": TURN})
    rows = [{"turn_id": TURN, "message": m, "role": r, "chunk": c} for m, r, c in COMPACTION_STORED]
    (stored,) = turns_from_history(
        rows, {TURN: TurnMetrics.from_wire(COMPACTION_METRICS)}, {TURN: 4}
    )
    live_html = render_to_string("chat/_turn.html", {"turn": live.view})
    stored_html = render_to_string("chat/_turn.html", {"turn": stored})
    assert " ".join(live_html.split()) == " ".join(stored_html.split())
    assert "Conversation compacted · 12 messages summarized (automatically)" in stored_html
    assert "<em>planned</em>" in stored_html  # the summary, expandable
    assert "compaction · 120 tok · 100ms" in stored_html
    # Cut at the length limit: said, with Continue.
    assert "The answer stopped at the length limit." in stored_html
    assert '"action": "continue"' in stored_html


def test_a_running_and_a_failed_compaction_say_so():
    live = LiveTurn(TURN, number=None)  # a manual compaction turn
    live.apply({"type": "compaction-start", "stepId": C0, "trigger": "manual", "messages": 3})
    assert "Compacting the conversation…" in render_to_string(
        "chat/_turn.html", {"turn": live.view}
    )
    live.apply({"type": "compaction-failed", "stepId": C0, "trigger": "manual",
                "message": "the model returned an empty summary", "code": "empty-summary"})  # fmt: skip
    html = render_to_string("chat/_turn.html", {"turn": live.view})
    assert "Compaction failed: the model returned an empty summary" in html
    assert live.failure == "the model returned an empty summary"
    assert live.view.kind == "compaction"


def test_a_context_overflow_error_offers_compact():
    rows = [
        {"turn_id": TURN, "message": 1, "role": "user", "chunk": {"type": "text", "text": "x"}},
        {"turn_id": TURN, "message": 2, "role": "assistant",
         "chunk": {"type": "error", "message": "too big", "code": "context-overflow"}},
    ]  # fmt: skip
    (turn,) = turns_from_history(rows, {}, {TURN: 1})
    html = render_to_string("chat/_turn.html", {"turn": turn})
    assert "too big" in html and '"action": "compact"' in html
    other = [dict(rows[0]), {**rows[1], "chunk": {"type": "error", "message": "HTTP 500"}}]
    (turn,) = turns_from_history(other, {}, {TURN: 1})
    assert '"action": "compact"' not in render_to_string("chat/_turn.html", {"turn": turn})


def test_a_continuation_reads_as_the_rest_of_the_answer_it_continues():
    first, second = "turn-1-aaaaaa", "turn-2-bbbbbb"
    rows = [
        {"turn_id": first, "message": 1, "role": "user", "chunk": {"type": "text", "text": "code"}},
        {"turn_id": first, "message": 2, "role": "assistant",
         "chunk": {"type": "text", "text": "Here:\n```python\ndef f():"}},
        {"turn_id": second, "message": 3, "role": "user",
         "chunk": {"type": "text", "text": "Continue…", "continuation": True}},
        {"turn_id": second, "message": 4, "role": "assistant",
         "chunk": {"type": "text", "text": "    return 1\n```\nDone."}},
    ]  # fmt: skip
    metrics = {
        first: TurnMetrics(first, "length"),
        second: TurnMetrics(second, "stop"),
    }
    earlier, later = turns_from_history(rows, metrics, {first: 1, second: 2})
    assert earlier.finish_reason == "length" and not earlier.cut  # continued: no notice
    assert later.continuation
    html = render_to_string("chat/_turn.html", {"turn": later})
    assert "Continue…" not in html  # the prompt of a Continue is not shown
    assert 'class="turn continuation"' in html
    # The code block cut in the first answer goes on in the second.
    assert '<pre class="hl"><code class="language-python">' in html and "Done." in html

    live = LiveTurn(second, number=2, fence="```python")
    live.apply({"type": "user-message", "text": "Continue…", "continuation": True})
    live.apply({"type": "text-delta", "delta": "    return 1\n```\nDone."})
    assert render_to_string(
        "chat/_block.html", {"block": live.view.blocks[1], "turn": live.view}
    ) == (render_to_string("chat/_block.html", {"block": later.blocks[1], "turn": later}))


def test_a_live_turn_reads_the_prompt_until_its_first_output():
    live = LiveTurn(TURN, number=1)
    live.apply({"type": "user-message", "text": "hi"})
    html = render_to_string("chat/_turn.html", {"turn": live.view})
    assert "Reading the prompt…" in html and 'class="elapsed"' in html
    live.apply({"type": "prompt-progress", "stepId": STEP0, "done": 512, "total": 2048})
    assert "25% of 2,048 tokens" in render_to_string("chat/_turn.html", {"turn": live.view})
    live.apply({"type": "status", "status": "queued"})
    assert "Waiting for the model…" in render_to_string("chat/_turn.html", {"turn": live.view})
    live.apply({"type": "status", "status": "active"})
    live.apply({"type": "text-delta", "delta": "Hello"})
    assert "waiting" not in render_to_string("chat/_turn.html", {"turn": live.view})


def test_a_turn_is_announced_as_plain_text_with_how_it_ended():
    live = LiveTurn(TURN, number=1)
    live.apply({"type": "user-message", "text": "hi"})
    live.apply({"type": "text-delta", "delta": "Some **bold** & `code`"})
    live.apply({"type": "done", "reason": "aborted", "durationMs": 5})
    assert live.view.announcement() == "Answer: Some bold & code (stopped)"
    assert live.view.answer_markdown == "Some **bold** & `code`"

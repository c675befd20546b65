"""The web app in a real browser against a real Daphne and a scripted model (docs/protocol.md#8-web-app-socket)."""

from __future__ import annotations

import threading

from playwright.sync_api import expect

from tests.chat.providers.sse_server import (
    OPENAI_DONE,
    Reply,
    openai_chunk,
    openai_text_reply,
    openai_tool_reply,
    openai_usage,
)
from tests.web.conftest import COMPLETIONS, screenshot


def gated_text_reply(first: str, gate: threading.Event, rest: str) -> Reply:
    """A streamed answer that holds after ``first`` until ``gate`` is set."""
    return Reply(
        events=[
            openai_chunk({"role": "assistant", "content": first}),
            gate,
            openai_chunk({"content": rest}),
            openai_chunk({}, "stop"),
            openai_chunk(usage=openai_usage(1200, 34)),
            OPENAI_DONE,
        ]
    )


def open_new_chat(page, daphne):
    page.goto(daphne.url + "/new")
    expect(page.locator("#composer textarea")).to_be_visible()
    expect(page.locator("body[data-socket=open]")).to_have_count(1)


def send(page, text: str) -> None:
    box = page.locator("#message")
    box.fill(text)
    box.press("Enter")


def test_send_streams_markdown_then_metrics(page, daphne, scripted):
    gate = threading.Event()
    scripted.script(COMPLETIONS, gated_text_reply("Hello **wor", gate, "ld** and `code`"))
    open_new_chat(page, daphne)
    send(page, "Say hello")

    expect(page.locator("#live .bubble.user")).to_have_text("Say hello")
    expect(page.locator("#live .md")).to_contain_text("Hello")
    expect(page.locator("#send-button")).to_have_text("Stop")
    expect(page.locator(".tab.current .tab-title")).to_have_text("Say hello")
    expect(page.locator(".tab.current .spinner")).to_be_visible()
    screenshot(page, "streaming.png")
    gate.set()

    expect(page.locator("#history .md strong")).to_have_text("world")
    expect(page.locator("#history .md code")).to_have_text("code")
    row = page.locator("#history .turn-row")
    expect(row).to_contain_text("turn 1 · 1,234 tok (1,200 in / 34 out)")
    expect(page.locator("#send-button")).to_have_text("Send")
    expect(page.locator(".tab.current .spinner")).to_have_count(0)
    expect(page.locator("#context-gauge")).to_contain_text("1,234 / 8,000")
    assert scripted.pending(COMPLETIONS) == 0


def test_tool_turn_groups_cards_and_shows_metrics_rows(page, daphne, scripted):
    calls = [
        ("call_list", "list_files", {}),
        ("call_read", "read_file", {"path": "notes.txt"}),
        ("call_missing", "read_file", {"path": "missing.txt"}),
    ]
    scripted.script(COMPLETIONS, openai_tool_reply(calls), openai_text_reply("All **done**."))
    open_new_chat(page, daphne)
    send(page, "Look around")

    step = page.locator("#history .step").first
    expect(page.locator("#history .md strong")).to_have_text("done")
    batch = step.locator(".tool-batch")
    expect(batch).to_have_count(1)
    expect(batch.locator(".tool-card")).to_have_count(3)
    expect(batch.locator(".batch-label")).to_have_text("3 tool calls")
    expect(batch.locator(".tool-card.ok")).to_have_count(2)
    expect(batch.locator(".tool-card.error .tool-name")).to_have_text("read_file")
    expect(step.locator(".step-row")).to_contain_text("step 1 · 15 tok")
    expect(page.locator("#history .step-row")).to_have_count(1)  # the text step ran no tools
    expect(page.locator("#history .turn-row")).to_contain_text("turn 1 · 30 tok (20 in / 10 out)")
    batch.locator(".tool-card").nth(1).locator("summary").click()
    expect(batch.locator(".tool-card").nth(1).locator(".tool-result")).to_contain_text("hello")
    screenshot(page, "tools.png")
    screenshot(page, "metrics-rows.png")

    page.reload()  # the same rows, rebuilt from the database
    expect(page.locator("#history .tool-card")).to_have_count(3)
    expect(page.locator("#history .step-row")).to_contain_text("step 1 · 15 tok")
    expect(page.locator("#history .turn-row")).to_contain_text("turn 1 · 30 tok (20 in / 10 out)")


def test_stop_with_an_empty_box_aborts_the_turn(page, daphne, scripted):
    gate = threading.Event()
    scripted.script(COMPLETIONS, gated_text_reply("Partial answ", gate, "never shown"))
    open_new_chat(page, daphne)
    send(page, "Long task")
    expect(page.locator("#live .md")).to_contain_text("Partial answ")
    button = page.locator("#send-button")
    expect(button).to_have_text("Stop")
    button.click()
    expect(page.locator("#history .md")).to_have_text("Partial answ")
    expect(button).to_have_text("Send")
    gate.set()
    expect(page.locator("#transcript")).not_to_contain_text("never shown")


def test_queue_while_generating_then_cancel_one(page, daphne, scripted):
    gate = threading.Event()
    scripted.script(
        COMPLETIONS, gated_text_reply("One moment", gate, "."), openai_text_reply("Second reply")
    )
    open_new_chat(page, daphne)
    send(page, "first")
    expect(page.locator("#live .md")).to_contain_text("One moment")
    page.locator("#message").fill("second")
    expect(page.locator("#send-button")).to_have_text("Queue")
    page.locator("#message").press("Enter")
    send(page, "third")
    queued = page.locator("#queue .queued-text")
    expect(queued).to_have_text(["second", "third"])
    page.locator("#queue .queued").nth(1).get_by_role("button", name="Cancel").click()
    expect(queued).to_have_text(["second"])
    gate.set()

    expect(page.locator("#history .bubble.user")).to_have_text(["first", "second"])
    expect(page.locator("#history .md").last).to_have_text("Second reply")
    expect(page.locator("#queue")).to_be_hidden()
    expect(page.locator("#history .turn-row").last).to_contain_text("turn 2 ·")
    assert scripted.pending(COMPLETIONS) == 0


def test_reload_and_reconnect_mid_turn_keep_streaming(page, daphne, scripted):
    gate = threading.Event()
    scripted.script(COMPLETIONS, gated_text_reply("Before the reload", gate, " and after"))
    open_new_chat(page, daphne)
    send(page, "Stream please")
    expect(page.locator("#live .md")).to_have_text("Before the reload")

    page.reload()
    expect(page.locator("#live .bubble.user")).to_have_text("Stream please")
    expect(page.locator("#live .md")).to_have_text("Before the reload")
    page.evaluate("window.dispatchUI.reconnect()")  # a dropped socket resyncs
    expect(page.locator("body[data-socket=open]")).to_have_count(1)
    gate.set()

    expect(page.locator("#history .md")).to_have_text("Before the reload and after")
    expect(page.locator("#transcript .bubble.user")).to_have_count(1)
    expect(page.locator("#transcript .turn-row")).to_have_count(1)


def test_two_browsers_stream_the_same_conversation(new_context, daphne, scripted):
    gate = threading.Event()
    scripted.script(COMPLETIONS, gated_text_reply("Shared start", gate, ", shared end"))
    first = new_context().new_page()
    open_new_chat(first, daphne)
    send(first, "For both")
    expect(first.locator("#live .md")).to_have_text("Shared start")

    second = new_context().new_page()
    second.goto(first.url)
    expect(second.locator("#live .md")).to_have_text("Shared start")
    gate.set()
    for page in (first, second):
        expect(page.locator("#history .md")).to_have_text("Shared start, shared end")
        expect(page.locator("#transcript .bubble.user")).to_have_count(1)


def test_tabs_persist_rename_and_close_across_browsers(new_context, daphne, scripted):
    scripted.script(COMPLETIONS, openai_text_reply("Tabbed"))
    first = new_context().new_page()
    open_new_chat(first, daphne)
    send(first, "A conversation about tabs and their persistence")
    expect(first.locator("#history .md")).to_have_text("Tabbed")
    conversation_id = first.url.rsplit("/", 1)[1]
    tab = first.locator(f'.tab[data-conversation="{conversation_id}"]')
    expect(tab.locator(".tab-title")).to_have_text("A conversation about tabs and their pers…")
    expect(tab.locator(".tab-prefix")).to_have_text(conversation_id[:4])

    second = new_context().new_page()
    second.goto(daphne.url + "/")  # the active tab reopens, on another device too
    expect(second).to_have_url(first.url)
    expect(second.locator("body[data-socket=open]")).to_have_count(1)
    other_tab = second.locator(f'.tab[data-conversation="{conversation_id}"]')
    expect(other_tab.locator(".tab-title")).to_have_text(
        "A conversation about tabs and their pers…"
    )

    tab.locator(".tab-title").dblclick()
    rename = first.locator(".tab-rename")
    rename.fill("Renamed")
    rename.press("Enter")
    expect(other_tab.locator(".tab-title")).to_have_text("Renamed")  # live, in the other browser
    screenshot(first, "tabs.png")

    other_tab.get_by_role("button", name="Close Renamed").click()
    expect(tab).to_have_count(0)  # gone live from the first browser
    expect(second).not_to_have_url(first.url)
    search = first.locator(".search")
    search.fill("Renam")
    entry = first.locator("#conversation-list a", has_text="Renamed")
    expect(entry).to_have_count(1)
    entry.click()  # reopens it as a tab
    expect(first.locator(f'.tab[data-conversation="{conversation_id}"]')).to_have_count(1)


def test_model_output_stays_inert(page, daphne, scripted):
    payload = (
        "<img src=x onerror=window.__xss=1> <script>window.__xss=2</script>"
        '<div hx-get="/new" hx-trigger="load">x</div> **safe**'
    )
    scripted.script(COMPLETIONS, openai_text_reply(payload))
    open_new_chat(page, daphne)
    send(page, "Be evil")
    expect(page.locator("#history .md strong")).to_have_text("safe")
    expect(page.locator("#history .md")).to_contain_text("<script>window.__xss=2</script>")
    assert page.evaluate("window.__xss") is None
    assert page.locator("#transcript script").count() == 0
    assert page.locator("#transcript img").count() == 0
    assert page.locator("#transcript [hx-get]").count() == 0
    page.reload()
    expect(page.locator("#history .md strong")).to_have_text("safe")
    assert page.evaluate("window.__xss") is None


def test_model_choice_is_per_conversation_and_sticky(page, daphne, scripted):
    scripted.script(COMPLETIONS, openai_text_reply("From beta"))
    open_new_chat(page, daphne)
    # alpha does not pass a reasoning effort, so it offers none; beta does.
    expect(page.get_by_label("Model", exact=True)).to_have_value("alpha/fast")
    expect(page.get_by_label("Effort")).to_be_hidden()
    expect(page.locator("#context-gauge")).to_contain_text("/ 8,000")
    page.get_by_label("Provider").select_option("beta")
    expect(page.locator("#model-select option")).to_have_text(["large"])
    expect(page.locator("#context-gauge")).to_contain_text("/ ?")  # beta sets no window
    page.get_by_label("Effort").select_option("low")
    send(page, "Which model?")
    expect(page.locator("#history .md")).to_have_text("From beta")
    assert scripted.requests[-1].body["model"] == "large"
    assert scripted.requests[-1].body["reasoning_effort"] == "low"
    page.reload()
    expect(page.get_by_label("Provider")).to_have_value("beta")
    expect(page.get_by_label("Model", exact=True)).to_have_value("beta/large")
    expect(page.get_by_label("Effort")).to_have_value("low")

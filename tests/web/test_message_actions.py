"""Message actions and live states in the browser (issue #18): Copy a message, an answer (its
Markdown) and a code block; Retry a failed turn; jump back to the latest output; the
"reading the prompt" state; answers announced once to screen readers; keyboard shortcuts;
a stopped turn's honest metrics row."""

from __future__ import annotations

import threading

from playwright.sync_api import expect

from tests.chat.live import wait_for
from tests.chat.providers.sse_server import (
    OPENAI_DONE,
    Pause,
    Reply,
    openai_chunk,
    openai_text_reply,
    openai_usage,
)
from tests.web.conftest import COMPLETIONS
from tests.web.test_chat_page import gated_text_reply, open_new_chat, send

ANSWER = "Use **this**:\n\n```python\nprint('copied')\n```\n\nDone."

# Records every change of the live region's text (set up before any page script runs).
WATCH_ANNOUNCER = """
window.__announced = [];
let last = "";
new MutationObserver(() => {
  const region = document.getElementById("announcer");
  const text = region ? region.textContent.trim() : "";
  if (text !== last) { last = text; if (text) window.__announced.push(text); }
}).observe(document, {subtree: true, childList: true, characterData: true});
"""


def clipboard(page) -> str:
    return page.evaluate("navigator.clipboard.readText()")


def test_copy_a_message_an_answer_and_a_code_block(new_context, daphne, scripted):
    context = new_context()
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=daphne.url)
    page = context.new_page()
    scripted.script(COMPLETIONS, openai_text_reply(ANSWER))
    open_new_chat(page, daphne)
    send(page, "How do I print?\nTwo lines.")
    expect(page.locator("#history .turn-row")).to_have_count(1)

    page.locator("#history .user-message").get_by_role("button", name="Copy").click()
    wait_for(lambda: clipboard(page) == "How do I print?\nTwo lines.", "the message copied")
    answer_actions = page.get_by_role("group", name="Answer actions")
    answer_actions.get_by_role("button", name="Copy").click()
    wait_for(lambda: clipboard(page) == ANSWER, "the answer's Markdown copied")
    expect(answer_actions.get_by_role("button", name="Copied")).to_be_visible()
    page.get_by_role("button", name="Copy code").click()
    wait_for(lambda: clipboard(page) == "print('copied')\n", "the code block copied")
    expect(page.locator("#history .md")).to_contain_text("Done.")  # the buttons add no text
    assert "Copy" not in page.locator("#history .md").text_content()


def test_retry_sends_a_failed_turns_prompt_again(page, daphne, scripted):
    scripted.script(
        COMPLETIONS,
        Reply(status=400, body={"error": {"message": "bad request upstream"}}),
        openai_text_reply("Second time lucky"),
    )
    open_new_chat(page, daphne)
    send(page, "Try this once more")
    expect(page.locator("#history .alert")).to_contain_text("bad request upstream")
    retry = page.get_by_role("button", name="Retry")
    expect(retry).to_have_count(1)
    retry.click()
    expect(page.locator("#history .md")).to_have_text("Second time lucky")
    expect(page.locator("#history .bubble.user")).to_have_text(
        ["Try this once more", "Try this once more"]
    )
    assert scripted.requests[-1].body["messages"][-1]["content"] == "Try this once more"
    expect(page.get_by_role("button", name="Retry")).to_have_count(1)  # the failed turn only


def test_jump_to_latest_appears_when_scrolled_up_during_streaming(page, daphne, scripted):
    page.set_viewport_size({"width": 900, "height": 500})
    gate, more = threading.Event(), threading.Event()
    lines = "".join(f"Line {n} of a long answer.\n\n" for n in range(60))
    scripted.script(
        COMPLETIONS,
        Reply(
            events=[
                openai_chunk({"role": "assistant", "content": lines}),
                gate,
                openai_chunk({"content": "More text after scrolling up.\n\n"}),
                more,
                openai_chunk({}, "stop"),
                openai_chunk(usage=openai_usage(10, 200)),
                OPENAI_DONE,
            ]
        ),
    )
    open_new_chat(page, daphne)
    send(page, "A long one")
    expect(page.locator("#live .md")).to_contain_text("Line 59")
    jump = page.locator("#jump-latest")
    expect(jump).to_be_hidden()  # following the output
    page.locator("#transcript").evaluate("(el) => { el.scrollTop = 0; }")
    gate.set()
    expect(page.locator("#live .md")).to_contain_text("More text after scrolling up.")
    expect(jump).to_be_visible()
    assert page.locator("#transcript").evaluate("(el) => el.scrollTop") == 0  # not yanked down
    jump.click()
    expect(jump).to_be_hidden()
    at_bottom = "(el) => el.scrollHeight - el.scrollTop - el.clientHeight < 80"
    assert page.locator("#transcript").evaluate(at_bottom)
    more.set()
    expect(page.locator("#history .turn-row")).to_have_count(1)


def test_reading_the_prompt_until_the_first_token(page, daphne, scripted):
    gate = threading.Event()
    scripted.script(
        COMPLETIONS,
        Reply(
            events=[
                gate,  # the model is still reading the prompt
                openai_chunk({"role": "assistant", "content": "First words"}),
                openai_chunk({}, "stop"),
                openai_chunk(usage=openai_usage(10, 2)),
                OPENAI_DONE,
            ]
        ),
    )
    open_new_chat(page, daphne)
    send(page, "Read this long prompt")
    waiting = page.locator("#live .waiting")
    expect(waiting).to_contain_text("Reading the prompt…")
    expect(waiting.locator(".elapsed")).to_have_text("1 s", timeout=5000)  # it counts
    gate.set()
    expect(page.locator("#history .md")).to_have_text("First words")
    expect(page.locator(".waiting")).to_have_count(0)


def test_answers_are_announced_once_not_per_delta(new_context, daphne, scripted):
    context = new_context()
    context.add_init_script(WATCH_ANNOUNCER)
    page = context.new_page()
    events = [openai_chunk({"role": "assistant", "content": ""})]
    for word in ("An ", "answer ", "in ", "**many** ", "deltas."):
        events += [Pause(0.05), openai_chunk({"content": word})]
    events += [openai_chunk({}, "stop"), openai_chunk(usage=openai_usage(5, 5)), OPENAI_DONE]
    scripted.script(COMPLETIONS, Reply(events=events))
    open_new_chat(page, daphne)
    send(page, "Speak up")
    expect(page.locator("#history .md")).to_have_text("An answer in many deltas.")
    expect(page.locator("#announcer")).to_have_text("Answer: An answer in many deltas.")
    assert page.locator("#announcer").get_attribute("aria-live") == "polite"
    page.locator("#message").focus()  # later updates (tabs, gauge) announce nothing more
    assert page.evaluate("window.__announced") == ["Answer: An answer in many deltas."]


def test_keyboard_shortcuts(page, daphne, scripted):
    gate = threading.Event()
    scripted.script(COMPLETIONS, gated_text_reply("Stoppable", gate, " never"))
    open_new_chat(page, daphne)
    first = page.url
    send(page, "Stop me with Escape")
    expect(page.locator("#live .md")).to_contain_text("Stoppable")
    page.keyboard.press("Escape")
    expect(page.locator("#history .turn-row")).to_contain_text("turn 1")
    gate.set()

    page.locator("#transcript").focus()
    page.keyboard.press("/")
    expect(page.locator("#message")).to_be_focused()
    page.keyboard.press("Alt+N")
    expect(page).not_to_have_url(first)
    expect(page.locator(".tab.draft")).to_have_count(1)
    expect(page.locator("body[data-socket=open]")).to_have_count(1)
    page.keyboard.press("Alt+BracketLeft")  # from the draft (last) to the tab before it
    expect(page.locator(".tab.current.draft")).to_have_count(0)
    expect(page.locator("body[data-socket=open]")).to_have_count(1)
    current = page.url
    page.keyboard.press("Alt+BracketRight")
    expect(page).not_to_have_url(current)
    page.locator("#transcript").focus()
    page.keyboard.press("Shift+?")
    dialog = page.get_by_role("dialog", name="Keyboard shortcuts")
    expect(dialog).to_be_visible()
    for text in ("New chat", "Stop the running turn", "Next tab", "Previous tab"):
        expect(dialog).to_contain_text(text)
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()


def test_a_stopped_turn_shows_its_estimated_tokens_and_the_gauge_keeps_the_last_size(
    page, daphne, scripted
):
    gate = threading.Event()
    pieces = [openai_chunk({"role": "assistant", "content": ""})]
    pieces += [openai_chunk({"content": f"t{n} "}) for n in range(45)]
    scripted.script(
        COMPLETIONS,
        openai_text_reply("Sized", prompt_tokens=1200, completion_tokens=34),
        Reply(events=[*pieces, gate]),
    )
    open_new_chat(page, daphne)
    send(page, "First")
    gauge = page.locator("#context-gauge")
    expect(gauge).to_contain_text("1,234 / 8,000")
    send(page, "Second, to be stopped")
    expect(page.locator("#live .md")).to_contain_text("t44")
    expect(gauge).to_contain_text("1,234 / 8,000")  # the last known size while it streams
    page.locator("#send-button").click()  # Stop
    row = page.locator("#history .turn-row").last
    expect(row).to_contain_text("turn 2 · ~45 tok (~45 out)")
    expect(gauge).to_contain_text("1,234 / 8,000")
    gate.set()

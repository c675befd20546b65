"""Compaction, the context budget's error and Continue in the web app, in Chromium
(docs/protocol.md#24-compaction, #410-the-context-budget, #411-continue)."""

from __future__ import annotations

import subprocess
import sys

from playwright.sync_api import expect

from tests.chat.providers.sse_server import (
    OPENAI_DONE,
    Reply,
    openai_chunk,
    openai_text_reply,
    openai_usage,
)
from tests.servers import REPO_ROOT, subprocess_env
from tests.web.conftest import COMPLETIONS, screenshot


def fill(stack_env, conversation_id: str, turns: int, text: int) -> None:
    subprocess.run(
        [sys.executable, "-m", "tests.chat.fill", "alice", conversation_id, str(turns),
         str(text), "alpha/fast"],
        cwd=REPO_ROOT, env=subprocess_env(**stack_env), check=True, capture_output=True,
    )  # fmt: skip


def open_page(page, daphne, conversation_id: str) -> None:
    page.goto(f"{daphne.url}/c/{conversation_id}")
    expect(page.locator("body[data-socket=open]")).to_have_count(1)


def send(page, text: str) -> None:
    box = page.locator("#message")
    box.fill(text)
    box.press("Enter")


def test_a_message_past_the_window_offers_compact_which_makes_room(
    page, daphne, scripted, stack_env, session_cookie
):
    # 20 turns of about 1,000 characters a chunk: 10,000 tokens, past alpha's 8,000.
    fill(stack_env, "ui-full", turns=20, text=1000)
    open_page(page, daphne, "ui-full")
    threshold = page.locator("#compact-threshold")
    threshold.fill("0")  # automatic compaction off: the budget refuses instead
    threshold.dispatch_event("change")
    calls = len(scripted.requests)

    send(page, "And now?")

    alert = page.locator("#history .alert").last
    expect(alert).to_contain_text("more than the 8,000-token context window of alpha/fast")
    expect(alert).to_contain_text("automatic compaction is off")
    assert len(scripted.requests) == calls  # refused before any model call
    scripted.script(COMPLETIONS, openai_text_reply("They talked about chunks."))
    alert.get_by_role("button", name="Compact conversation").click()

    divider = page.locator("#history .compaction").last
    expect(divider).to_contain_text("Conversation compacted · 32 messages summarized")
    divider.locator("summary").click()
    expect(divider.locator(".md")).to_have_text("They talked about chunks.")
    expect(page.locator("#history .compaction-row").last).to_contain_text("compaction · 15 tok")
    screenshot(page, "compaction.png")

    scripted.script(COMPLETIONS, openai_text_reply("Now it fits."))
    send(page, "And now?")
    expect(page.locator("#history .md").last).to_have_text("Now it fits.")
    sent = scripted.requests[-1].body["messages"]
    assert "They talked about chunks." in sent[0]["content"]


def test_a_cut_answer_says_so_and_continue_goes_on_without_a_new_bubble(
    page, daphne, scripted, session_cookie
):
    cut = Reply(
        events=[
            openai_chunk({"role": "assistant", "content": "Step one:\n```python\ndef f():"}),
            openai_chunk({}, "length"),
            openai_chunk(usage=openai_usage(10, 4)),
            OPENAI_DONE,
        ]
    )
    scripted.script(COMPLETIONS, cut, openai_text_reply("    return 1\n```\nThat is all."))
    page.goto(f"{daphne.url}/new")
    expect(page.locator("body[data-socket=open]")).to_have_count(1)
    send(page, "Write f")

    notice = page.locator("#history .cut-notice")
    expect(notice).to_contain_text("The answer stopped at the length limit.")
    notice.get_by_role("button", name="Continue").click()

    expect(page.locator("#history section.turn.continuation")).to_have_count(1)
    expect(page.locator("#history .bubble.user")).to_have_count(1)  # the prompt, not "Continue"
    continued = page.locator("#history section.turn.continuation .md")
    expect(continued).to_contain_text("That is all.")
    # The code block cut in the first answer goes on as code in the second.
    expect(continued.locator("code.language-python")).to_contain_text("return 1")
    expect(page.locator(".continue-action:visible")).to_have_count(0)

    page.reload()
    expect(page.locator("#history .cut-notice")).to_have_count(0)  # continued: no notice
    expect(page.locator("#history section.turn.continuation")).to_have_count(1)

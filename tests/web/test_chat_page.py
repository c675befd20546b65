"""The web app in a real browser against a real Daphne and a scripted model (SPEC §6)."""

from __future__ import annotations

import threading

from playwright.sync_api import expect

from tests.chat.providers.sse_server import (
    OPENAI_DONE,
    Reply,
    openai_chunk,
    openai_text_reply,
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

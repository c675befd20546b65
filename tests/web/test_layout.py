"""The web app at a phone's and a desktop's size, and its themes (issue #18): the sidebar as
a drawer, nothing wider than the screen, a one-row composer, tabs that never hide the current
one or "New chat", and a dark theme kept per user on the server."""

from __future__ import annotations

import uuid

import httpx
import pytest
from playwright.sync_api import expect

from tests.chat.live import wait_for
from tests.chat.providers.sse_server import openai_text_reply, openai_tool_reply
from tests.web.conftest import COMPLETIONS, screenshot
from tests.web.test_chat_page import open_new_chat, send

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}
WIDE_CODE = "```python\n" + "x = '" + "wide " * 60 + "'\n```"


@pytest.fixture
def sized_context(browser, daphne, session_cookie):
    contexts = []

    def make(viewport, **options):
        context = browser.new_context(viewport=viewport, **options)
        context.add_cookies([{"name": "sessionid", "value": session_cookie, "url": daphne.url}])
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


def page_width(page) -> int:
    return page.evaluate("document.documentElement.scrollWidth")


def box(locator) -> dict:
    return locator.bounding_box()


def test_phone_layout_drawer_full_width_and_one_row_composer(sized_context, daphne, scripted):
    page = sized_context(PHONE, has_touch=True).new_page()
    scripted.script(
        COMPLETIONS,
        openai_tool_reply([("c1", "read_file", {"path": "notes.txt"})]),
        openai_text_reply(
            "A **wide** block:\n\n" + WIDE_CODE + "\n\n| a | b |\n|---|---|\n| 1 | 2 |"
        ),
    )
    open_new_chat(page, daphne)
    expect(page.locator("#sidebar")).to_be_hidden()
    expect(page.locator("#drawer-button")).to_be_visible()
    send(page, "Show me something wide on my phone")
    expect(page.locator("#history .turn-row")).to_have_count(1)
    page.locator("#history .tool-card summary").click()

    assert page_width(page) <= PHONE["width"]  # nothing pushes the page sideways
    transcript = box(page.locator("#transcript"))
    assert transcript["width"] >= PHONE["width"] - 2
    pre = page.locator("#history .md pre")
    assert pre.evaluate("(el) => el.scrollWidth > el.clientWidth")  # it scrolls inside itself
    assert box(pre)["width"] <= PHONE["width"]
    row = [box(page.locator(s)) for s in ("#credential-select", "#model-select", "#send-button")]
    middles = [b["y"] + b["height"] / 2 for b in row]
    assert max(middles) - min(middles) < 12, row  # one row
    assert all(b["x"] + b["width"] <= PHONE["width"] for b in row)
    expect(page.get_by_label("Provider")).to_be_visible()  # labelled, though visually hidden
    screenshot(page, "phone-chat.png")

    page.locator("#drawer-button").click()
    expect(page.locator("#sidebar")).to_be_visible()
    expect(page.locator("#drawer-button")).to_have_attribute("aria-expanded", "true")
    expect(page.locator("#conversation-search")).to_be_focused()
    opened = "getComputedStyle(document.getElementById('sidebar')).transform === 'none'"
    wait_for(lambda: page.evaluate(opened), "the drawer to slide in")
    screenshot(page, "phone-drawer.png")
    page.keyboard.press("Escape")
    expect(page.locator("#sidebar")).to_be_hidden()
    expect(page.locator("#drawer-button")).to_be_focused()

    page.goto(daphne.url + "/metrics/")
    expect(page.locator(".metrics-table").first).to_be_visible()
    assert page_width(page) <= PHONE["width"]
    first_cell = page.locator(".metrics-table td").first
    assert box(first_cell)["width"] > PHONE["width"] / 2  # a card per row, not a wide table
    screenshot(page, "phone-metrics.png")


def test_dark_theme_is_the_users_choice_on_every_device(sized_context, daphne, scripted):
    scripted.script(
        COMPLETIONS,
        openai_tool_reply([("c1", "list_files", {})]),
        openai_text_reply("Dark **mode**:\n\n```python\nprint('night')\n```"),
    )
    phone = sized_context(PHONE, color_scheme="light").new_page()
    desktop = sized_context(DESKTOP, color_scheme="light").new_page()
    open_new_chat(desktop, daphne)
    send(desktop, "Show me the dark theme")
    expect(desktop.locator("#history .turn-row")).to_have_count(1)
    phone.goto(desktop.url)
    expect(phone.locator("body[data-socket=open]")).to_have_count(1)
    background = "getComputedStyle(document.body).backgroundColor"
    assert desktop.evaluate(background) == "rgb(255, 255, 255)"

    desktop.get_by_label("Theme", exact=True).select_option("dark")
    expect(desktop.locator("html")).to_have_attribute("data-theme", "dark")
    assert desktop.evaluate(background) == "rgb(13, 17, 23)"
    expect(phone.locator("html")).to_have_attribute("data-theme", "dark")  # live, other device
    keyword = desktop.locator("#history .md pre .hl-nb, #history .md pre .hl-n").first
    assert keyword.evaluate("(el) => getComputedStyle(el).color") != "rgb(0, 0, 0)"
    desktop.locator("#history .tool-card summary").click()
    screenshot(desktop, "dark-chat.png")
    screenshot(phone, "dark-phone-chat.png")

    fresh = sized_context(DESKTOP, color_scheme="light").new_page()  # a third device, later
    fresh.goto(daphne.url + "/metrics/")
    expect(fresh.locator("html")).to_have_attribute("data-theme", "dark")
    screenshot(fresh, "dark-metrics.png")
    fresh.get_by_label("Theme", exact=True).select_option("system")  # saved with PUT /preferences
    expect(fresh.locator("html")).to_have_attribute("data-theme", "system")
    expect(desktop.locator("html")).to_have_attribute("data-theme", "system")
    system_dark = sized_context(DESKTOP, color_scheme="dark").new_page()
    system_dark.goto(desktop.url)
    assert system_dark.evaluate(background) == "rgb(13, 17, 23)"  # the browser's dark


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_tabs_never_hide_the_current_tab_or_new_chat(
    viewport, sized_context, daphne, api_token, scripted
):
    ids = [f"tabs-{uuid.uuid4().hex[:8]}" for _ in range(7)]
    with httpx.Client(base_url=daphne.url, headers={"Authorization": f"Bearer {api_token}"}) as api:
        for n, conversation_id in enumerate(ids):
            title = f"A long conversation title number {n} that takes room"
            assert api.put(
                f"/conversations/{conversation_id}/title", json={"title": title}
            ).is_success
            assert api.post(f"/conversations/{conversation_id}/open").is_success
    page = sized_context(viewport).new_page()
    for conversation_id in (ids[0], ids[-1], ids[3]):
        page.goto(f"{daphne.url}/c/{conversation_id}")
        expect(page.locator("body[data-socket=open]")).to_have_count(1)
        strip = box(page.locator("#tabs"))
        current = box(page.locator(".tab.current"))
        inside = strip["x"] - 1 <= current["x"]
        assert inside and current["x"] + current["width"] <= strip["x"] + strip["width"] + 1
        new_chat = page.locator(".tab-new")
        expect(new_chat).to_be_visible()
        assert box(new_chat)["x"] + box(new_chat)["width"] <= viewport["width"]
        expect(page.locator(".tabs-scroll").first).to_be_visible()  # it overflows: buttons
    later = page.locator(".tabs-scroll[data-scroll='1']")
    before = page.locator("#tabs").evaluate("(el) => el.scrollLeft")
    later.click()
    scrolled = f"document.getElementById('tabs').scrollLeft !== {before}"
    wait_for(lambda: page.evaluate(scrolled), "the strip to scroll")
    with httpx.Client(base_url=daphne.url, headers={"Authorization": f"Bearer {api_token}"}) as api:
        for conversation_id in ids:
            api.post(f"/conversations/{conversation_id}/close")

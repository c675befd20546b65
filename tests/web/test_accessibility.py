"""axe-core (axe-playwright-python) on the web app's pages and states at a desktop and a
phone size, in the light and the dark theme: no serious or critical violation (issue #18).

The chat page is checked idle, while a turn streams, with tool cards open, and after a
provider error (an alert and a Retry action); then the metrics page and the login page.
"""

from __future__ import annotations

import threading

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from tests.chat.providers.sse_server import Reply, openai_text_reply, openai_tool_reply
from tests.web.conftest import COMPLETIONS
from tests.web.test_chat_page import gated_text_reply, open_new_chat, send

VIEWPORTS = {"desktop": {"width": 1280, "height": 800}, "phone": {"width": 390, "height": 844}}
BLOCKING = {"serious", "critical"}
axe = Axe()


def assert_accessible(page, state: str) -> None:
    results = axe.run(page)
    blocking = [v for v in results.response["violations"] if v["impact"] in BLOCKING]
    report = "\n".join(
        f"{v['id']} ({v['impact']}): {v['help']} — "
        + "; ".join(n["html"][:160] for n in v["nodes"][:4])
        for v in blocking
    )
    assert not blocking, f"{state}:\n{report}"


@pytest.fixture(
    params=[(v, t) for v in VIEWPORTS for t in ("light", "dark")], ids=lambda p: "-".join(p)
)
def sized(request, browser, daphne, session_cookie):
    viewport, scheme = request.param
    context = browser.new_context(viewport=VIEWPORTS[viewport], color_scheme=scheme)
    context.add_cookies([{"name": "sessionid", "value": session_cookie, "url": daphne.url}])
    context.set_default_timeout(15_000)
    yield context, viewport, scheme
    context.close()


def test_chat_page_states_have_no_serious_violations(sized, daphne, scripted):
    context, viewport, _ = sized
    page = context.new_page()
    open_new_chat(page, daphne)
    assert_accessible(page, "idle, new chat")

    gate = threading.Event()
    scripted.script(
        COMPLETIONS,
        openai_tool_reply([("c1", "list_files", {}), ("c2", "read_file", {"path": "gone.txt"})]),
        gated_text_reply("Here is **some** `code`:\n\n```python\nprint(1)\n```\n", gate, " Done."),
    )
    send(page, "Look at my files")
    expect(page.locator("#live .md")).to_contain_text("Here is")
    assert_accessible(page, "streaming")
    gate.set()
    expect(page.locator("#history .turn-row")).to_have_count(1)
    for card in page.locator("#history .tool-card summary").all():
        card.click()
    if viewport == "phone":
        page.locator("#drawer-button").click()
        expect(page.locator("#conversation-search")).to_be_focused()
    assert_accessible(page, "tool cards open" + (" and the drawer" if viewport == "phone" else ""))
    if viewport == "phone":
        page.keyboard.press("Escape")

    scripted.script(
        COMPLETIONS, Reply(status=400, body={"error": {"message": "this model refuses"}})
    )
    send(page, "Fail please")
    expect(page.locator("#history .alert")).to_have_count(1)
    expect(page.get_by_role("button", name="Retry")).to_be_visible()
    assert_accessible(page, "error")

    page.locator("#transcript").focus()  # out of the message box: "?" is a shortcut there
    page.keyboard.press("Shift+?")
    expect(page.locator("#help-dialog")).to_be_visible()
    assert_accessible(page, "help dialog")


def test_metrics_and_login_pages_have_no_serious_violations(sized, browser, daphne, scripted):
    context, viewport, scheme = sized
    scripted.script(COMPLETIONS, openai_text_reply("Counted"))
    page = context.new_page()
    open_new_chat(page, daphne)
    send(page, "A turn for the metrics")
    expect(page.locator("#history .turn-row")).to_have_count(1)
    page.goto(daphne.url + "/metrics/")
    expect(page.locator(".metrics-table").first).to_be_visible()
    assert_accessible(page, "metrics")

    anonymous = browser.new_context(viewport=VIEWPORTS[viewport], color_scheme=scheme)
    login = anonymous.new_page()
    login.goto(daphne.url + "/login/")
    assert_accessible(login, "login")
    login.goto(daphne.url + "/login/once/not-a-token/")
    assert_accessible(login, "login link invalid")
    anonymous.close()

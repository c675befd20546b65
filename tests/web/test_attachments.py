"""Attachments in the web app, in Chromium: drop, paste or pick files, see them before
sending, remove them, send them; a real PNG dropped on the page reaches the model's server as
an image part; the transcript shows thumbnails (click to view) and file chips."""

from __future__ import annotations

import base64
from pathlib import Path

import httpx
from playwright.sync_api import expect

from tests.chat.images import image_of, png_bytes
from tests.chat.live import wait_for
from tests.chat.providers.sse_server import openai_text_reply
from tests.web.conftest import COMPLETIONS, screenshot
from tests.web.test_accessibility import assert_accessible
from tests.web.test_chat_page import open_new_chat, send
from tests.web.test_csp import COLLECT_VIOLATIONS, violations

DATA_TRANSFER = """(files) => {
  const transfer = new DataTransfer();
  for (const [name, type, data] of files) {
    const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
    transfer.items.add(new File([bytes], name, { type }));
  }
  return transfer;
}"""


def transfer(page, *files: tuple[str, str, bytes]):
    """A DataTransfer in the page holding real files (name, type, bytes)."""
    return page.evaluate_handle(
        DATA_TRANSFER, [[name, kind, base64.b64encode(data).decode()] for name, kind, data in files]
    )


def drop(page, selector: str, *files: tuple[str, str, bytes]) -> None:
    """Drag files from outside the browser and drop them on ``selector``."""
    data = transfer(page, *files)
    for event in ("dragenter", "dragover", "drop"):
        page.dispatch_event(selector, event, {"dataTransfer": data})


def paste(page, selector: str, *files: tuple[str, str, bytes]) -> None:
    page.locator(selector).evaluate(
        "(box, transfer) => box.dispatchEvent(new ClipboardEvent('paste', "
        "{clipboardData: transfer, bubbles: true, cancelable: true}))",
        transfer(page, *files),
    )


def chat_request(scripted, index: int = -1) -> dict:
    return scripted.requests[index].body


def test_a_png_dropped_on_the_page_reaches_the_model_as_an_image_part(
    new_context, daphne, scripted, api_token
):
    context = new_context()
    context.add_init_script(COLLECT_VIOLATIONS)
    page = context.new_page()
    scripted.script(COMPLETIONS, openai_text_reply("A **red** rectangle."))
    original = png_bytes(120, 80, (220, 40, 40))
    open_new_chat(page, daphne)

    drop(page, "#transcript", ("red.png", "image/png", original))
    chip = page.locator("#attachment-tray .attachment-chip.image")
    expect(chip).to_have_count(1)
    expect(chip.locator(".chip-name")).to_have_text("red.png")
    thumb = chip.locator("img.chip-thumb")
    expect(thumb).to_be_visible()
    wait_for(lambda: thumb.evaluate("img => img.complete && img.naturalWidth === 120"), "thumb")
    attachment_id = chip.get_attribute("data-id")
    expect(page.locator("#send-button")).to_be_enabled()  # an image alone may be sent

    send(page, "What is this?")
    expect(page.locator("#history .md strong")).to_have_text("red")
    expect(page.locator("#attachment-tray .attachment-chip")).to_have_count(0)

    parts = chat_request(scripted)["messages"][-1]["content"]
    assert parts[0] == {"type": "text", "text": "What is this?"}
    assert parts[1]["type"] == "image_url"
    url = parts[1]["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    sent = image_of(base64.b64decode(url.split(",", 1)[1]))
    assert sent.size == (120, 80) and sent.getpixel((5, 5))[:3] == (220, 40, 40)
    served = httpx.get(
        f"{daphne.url}/attachments/{attachment_id}/content",
        headers={"Authorization": f"Bearer {api_token}"},
    )
    assert base64.b64decode(url.split(",", 1)[1]) == served.content

    bubble_image = page.locator("#history .bubble-attachments .attachment-thumb img")
    expect(bubble_image).to_have_attribute("alt", "red.png")
    page.locator("#history .attachment-thumb").click()
    viewer = page.locator("dialog#attachment-viewer")
    expect(viewer).to_be_visible()
    expect(viewer.locator("img")).to_have_attribute(
        "src", f"{daphne.url}/attachments/{attachment_id}/content"
    )
    screenshot(page, "attachment-viewer.png")
    page.keyboard.press("Escape")
    expect(viewer).to_be_hidden()

    page.reload()  # the same thumbnail, from the log
    expect(page.locator("#history .bubble-attachments img")).to_have_attribute("alt", "red.png")
    screenshot(page, "attachments.png")
    assert_accessible(page, "a thumbnail in the transcript")
    assert violations(page) == []


def test_pick_paste_remove_then_send_files_to_a_model_without_vision(
    page, daphne, scripted, stack_env, api_token
):
    scripted.script(COMPLETIONS, openai_text_reply("Got them."))
    open_new_chat(page, daphne)
    page.locator("#model-select").select_option("alpha/smart")

    page.locator("#attach-input").set_input_files(
        [{"name": "data.csv", "mimeType": "text/csv", "buffer": b"a,b\n1,2\n"}]
    )
    paste(page, "#message", ("screenshot.png", "image/png", png_bytes(30, 20)))
    chips = page.locator("#attachment-tray .attachment-chip[data-id]")
    expect(chips).to_have_count(2)
    file_chip = page.locator("#attachment-tray .attachment-chip.file")
    expect(file_chip.locator(".chip-name")).to_have_text("data.csv")
    expect(file_chip.locator(".chip-size")).to_have_text("8 bytes")
    screenshot(page, "attachments-composer.png")
    assert_accessible(page, "chips in the composer")

    image_chip = page.locator("#attachment-tray .attachment-chip.image")
    removed = image_chip.get_attribute("data-id")
    image_chip.locator(".chip-remove").click()
    expect(chips).to_have_count(1)
    wait_for(
        lambda: (
            httpx.get(
                f"{daphne.url}/attachments/{removed}",
                headers={"Authorization": f"Bearer {api_token}"},
            ).status_code
            == 404
        ),
        "the removed upload to be deleted on the server",
    )

    page.locator("#send-button").click()  # attachments alone, no text
    chip = page.locator("#history .bubble-attachments .attachment-chip.file")
    expect(chip.locator(".chip-name")).to_have_text("data.csv")
    expect(chip.locator(".chip-size")).to_have_text("8 bytes")
    expect(page.locator("#history .md")).to_have_text("Got them.")

    request = chat_request(scripted)
    assert request["model"] == "smart"
    assert request["messages"][-1]["content"] == (
        "[Attached file: data.csv (8 bytes, text/csv), saved as data.csv in the working directory]"
    )
    workspace = Path(stack_env["DISPATCH_CONFIG"]).parent / "workspace"
    saved = [p for p in workspace.rglob("data.csv*")]
    assert [p.read_bytes() for p in saved] == [b"a,b\n1,2\n"]


def test_a_file_the_server_refuses_shows_why_and_leaves_no_chip(page, daphne):
    open_new_chat(page, daphne)
    drop(page, "#message", ("photo.png", "image/png", b"<?php echo 1; ?>"))
    expect(page.locator("#notice .alert")).to_have_text(
        "file: photo.png is not a PNG, JPEG, GIF, WebP or BMP image (its content was checked, "
        "not its name)"
    )
    expect(page.locator("#attachment-tray .attachment-chip")).to_have_count(0)
    expect(page.locator("#send-button")).to_be_disabled()
    # The page's own limit, before any upload: the configured maximum count per message.
    maximum = int(page.locator("#attachment-tray").get_attribute("data-max-count"))
    files = [(f"{n}.txt", "text/plain", b"x") for n in range(maximum + 1)]
    drop(page, "#message", *files)
    expect(page.locator("#attachment-tray .attachment-chip[data-id]")).to_have_count(maximum)
    expect(page.locator("#notice .alert")).to_contain_text(
        f"At most {maximum} attachments per message"
    )

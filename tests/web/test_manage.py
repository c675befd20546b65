"""Managing conversations in a real browser: the system prompt and presets, Edit and
Regenerate as forks, archive and delete (with a confirmation, live on other pages), export
and import, full-text search. A real Daphne and a scripted model (tests/web/conftest.py)."""

from __future__ import annotations

import json
import re

import httpx
from playwright.sync_api import expect

from tests.chat.providers.sse_server import openai_text_reply
from tests.web.conftest import COMPLETIONS, screenshot
from tests.web.test_chat_page import open_new_chat, send


def conversation_id(page) -> str:
    return page.url.split("/c/")[1].split("?")[0]


def answered(page, scripted, question: str, answer: str) -> None:
    """Send ``question``; the model answers ``answer``; wait until it is in the history."""
    scripted.script(COMPLETIONS, openai_text_reply(answer))
    send(page, question)
    expect(page.locator("#history .md").last).to_have_text(answer)
    expect(page.locator("#send-button")).to_have_text("Send")


def api(daphne, api_token):
    return httpx.Client(
        base_url=daphne.url, headers={"Authorization": f"Bearer {api_token}"}, timeout=30
    )


def test_system_prompt_is_edited_saved_as_preset_and_sent(page, daphne, scripted):
    open_new_chat(page, daphne)
    page.locator("#system-prompt summary").click()
    template = page.locator("#prompt-template")
    template.fill("Be terse. [if git_branch]On {{git_branch}}.[endif]Chat {{nope}}")
    page.locator("#prompt-save").click()
    expect(page.locator("#notice")).to_contain_text("template: line 1: undefined variable 'nope'")

    template.fill("Be terse. You work for {{user}} in chat {{conversation_id}}.")
    page.locator("#prompt-save").click()
    current = conversation_id(page)
    resolved = f"Be terse. You work for alice in chat {current}."
    expect(page.locator("#prompt-resolved")).to_have_text(resolved)
    page.locator("#preset-name").fill("Terse")
    page.locator("#preset-save").click()
    expect(page.locator("#preset-select option", has_text="Terse")).to_have_count(1)
    screenshot(page, "system-prompt.png")

    answered(page, scripted, "Who am I?", "You are alice.")
    assert scripted.requests[-1].body["messages"][0] == {"role": "system", "content": resolved}

    # A new chat starts from the preset.
    open_new_chat(page, daphne)
    page.locator("#system-prompt summary").click()
    page.locator("#preset-select").select_option("Terse")
    expect(page.locator("#prompt-template")).to_have_value(
        "Be terse. You work for {{user}} in chat {{conversation_id}}."
    )
    page.locator("#prompt-save").click()
    expect(page.locator("#prompt-resolved")).to_contain_text(conversation_id(page))


def test_edit_and_regenerate_fork_the_conversation(page, daphne, scripted):
    open_new_chat(page, daphne)
    answered(page, scripted, "Name a colour", "Blue.")
    answered(page, scripted, "Another one", "Green.")
    source = conversation_id(page)

    message = page.locator("#history .user-message", has_text="Another one")
    message.hover()
    message.locator(".bubble-edit").click()
    expect(page).not_to_have_url(re.compile(source))
    expect(page.locator("#message")).to_have_value("Another one")
    expect(page.locator(".forked-from")).to_contain_text("Forked from Name a colour")
    expect(page.locator("#history .bubble.user")).to_have_count(1)  # the copy before the edit
    page.locator("#message").fill("Another one, but warm")
    scripted.script(COMPLETIONS, openai_text_reply("Red."))  # before the send that asks for it
    page.locator("#message").press("Enter")
    expect(page.locator("#history .md").last).to_have_text("Red.")
    edited = conversation_id(page)

    # The source is unchanged and links to its fork.
    page.goto(f"{daphne.url}/c/{source}")
    expect(page.locator("#history .md")).to_have_text(["Blue.", "Green."])
    expect(page.locator(".forks a")).to_have_count(1)
    expect(page.locator(".forks a")).to_have_attribute("href", f"/c/{edited}")

    # Regenerate the second answer: a fork before "Another one" that runs it again.
    scripted.script(COMPLETIONS, openai_text_reply("Yellow."))
    turn = page.locator("#history .turn").last
    turn.hover()
    turn.locator(".turn-regenerate").click()
    expect(page).not_to_have_url(re.compile(source))
    expect(page.locator("#history .md")).to_have_text(["Blue.", "Yellow."])
    expect(page.locator("#history .bubble.user").last).to_have_text(re.compile("^Another one"))
    screenshot(page, "fork.png")
    assert scripted.requests[-1].body["messages"][-1] == {"role": "user", "content": "Another one"}


def test_archive_and_delete_with_confirmation_update_other_pages(
    new_context, daphne, scripted, api_token
):
    first = new_context().new_page()
    open_new_chat(first, daphne)
    answered(first, scripted, "Something to archive", "Archived answer.")
    doomed = conversation_id(first)
    second = new_context().new_page()
    second.goto(f"{daphne.url}/new")
    tab = second.locator(f'.tab[data-conversation="{doomed}"]')
    expect(tab).to_have_count(1)

    first.locator("#archive-button").click()
    expect(first.locator(".archived-note")).to_be_visible()
    expect(tab).to_have_count(0)  # the other page drops it live
    expect(second.locator("#conversation-list")).not_to_contain_text("Something to archive")
    second.locator("#show-archived").click()
    expect(second.locator("#conversation-list")).to_contain_text("Something to archive")
    first.locator("#restore-button").click()
    expect(first.locator("#archive-button")).to_be_visible()

    third = new_context().new_page()  # a second page on the same conversation
    third.goto(f"{daphne.url}/c/{doomed}")
    expect(third.locator("body[data-socket=open]")).to_have_count(1)
    first.locator("#delete-button").click()
    dialog = first.locator("#delete-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Something to archive")
    screenshot(first, "delete-dialog.png")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    with api(daphne, api_token) as client:
        assert client.get(f"/conversations/{doomed}").status_code == 200

    first.locator("#delete-button").click()
    first.locator("#delete-confirm").click()
    expect(first).not_to_have_url(re.compile(doomed))
    expect(third).not_to_have_url(re.compile(doomed))  # live, on the other page too
    expect(second.locator(f'.tab[data-conversation="{doomed}"]')).to_have_count(0)
    with api(daphne, api_token) as client:
        assert client.get(f"/conversations/{doomed}").status_code == 404
        assert client.get(f"/conversations/{doomed}/export").status_code == 404
    assert first.goto(f"{daphne.url}/c/{doomed}").status == 404


def test_export_downloads_and_import_opens_the_copy(page, daphne, scripted, tmp_path):
    open_new_chat(page, daphne)
    answered(page, scripted, "Export me", "An answer worth keeping.")
    source = conversation_id(page)
    with page.expect_download() as download:
        page.get_by_role("link", name="Export .md").click()
    markdown = download.value.path().read_text()
    assert markdown.startswith("# Export me\n") and "An answer worth keeping." in markdown
    with page.expect_download() as download:
        page.get_by_role("link", name="Export .json").click()
    exported = tmp_path / download.value.suggested_filename
    download.value.save_as(exported)
    assert json.loads(exported.read_text())["conversation"]["id"] == source

    broken = tmp_path / "broken.json"
    broken.write_text('{"format": "dispatch.conversation", "version": 9, "conversation": {}}')
    page.locator("#import-file").set_input_files(str(broken))
    expect(page.locator("#notice")).to_contain_text(
        "Import refused: version: unsupported version 9 (this server reads 1)"
    )
    page.locator("#import-file").set_input_files(str(exported))
    expect(page).not_to_have_url(re.compile(source))
    expect(page.locator("#history .md")).to_have_text("An answer worth keeping.")
    expect(page.locator("#history .turn-row")).to_contain_text("turn 1")
    screenshot(page, "import.png")


def test_search_finds_messages_and_opens_the_turn(page, daphne, scripted):
    open_new_chat(page, daphne)
    answered(page, scripted, "Tell me about zebrafish", "Zebrafish regenerate their fins.")
    found = conversation_id(page)
    open_new_chat(page, daphne)
    page.locator(".search").fill("zebrafish fin")
    hit = page.locator("#search-results a").first
    expect(hit).to_contain_text("Zebrafish regenerate their")
    expect(hit.locator("mark").first).to_have_text("Zebrafish")
    screenshot(page, "search.png")
    hit.click()
    expect(page).to_have_url(re.compile(f"/c/{found}\\?at=2$"))
    expect(page.locator("#history .md")).to_have_text("Zebrafish regenerate their fins.")

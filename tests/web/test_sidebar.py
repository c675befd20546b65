"""The sidebar follows the user's conversations live on every open page (issue #18): a new
conversation, a rename, a close and a reopen show without a reload, and the search matches
anywhere in a title while the list keeps one ``ul#conversation-list``."""

from __future__ import annotations

import uuid

import httpx
from playwright.sync_api import expect

from tests.chat.providers.sse_server import openai_text_reply
from tests.web.conftest import COMPLETIONS
from tests.web.test_chat_page import open_new_chat, send


def entry(page, conversation_id: str):
    return page.locator(f'#conversation-list li[data-conversation="{conversation_id}"]')


def test_the_list_follows_new_renamed_closed_and_reopened_conversations(
    new_context, daphne, scripted, api_token
):
    watcher = new_context().new_page()
    open_new_chat(watcher, daphne)
    actor = new_context().new_page()
    open_new_chat(actor, daphne)
    marker = uuid.uuid4().hex[:6]
    scripted.script(COMPLETIONS, openai_text_reply("Listed"))
    send(actor, f"Live sidebar {marker}")
    conversation_id = actor.url.rsplit("/", 1)[1]
    expect(entry(watcher, conversation_id)).to_contain_text(f"Live sidebar {marker}")
    current = actor.locator("#conversation-list a[aria-current=page]")
    expect(current).to_contain_text(f"Live sidebar {marker}")  # still marked after a refresh

    actor.locator(f'.tab[data-conversation="{conversation_id}"] .tab-rename-button').click()
    rename = actor.locator(".tab-rename")
    expect(rename).to_be_focused()
    rename.fill(f"Renamed {marker}")
    rename.press("Enter")
    expect(entry(watcher, conversation_id).locator(".conv-title")).to_have_text(f"Renamed {marker}")

    with httpx.Client(base_url=daphne.url, headers={"Authorization": f"Bearer {api_token}"}) as api:
        api.post(f"/conversations/{conversation_id}/close")
        expect(entry(watcher, conversation_id).locator(".conv-status")).to_have_text("closed")
        api.post(f"/conversations/{conversation_id}/open")
        expect(entry(watcher, conversation_id).locator(".conv-status")).to_have_text("idle")
    assert watcher.locator("ul#conversation-list").count() == 1


def test_search_matches_inside_titles_and_keeps_one_list(page, daphne, api_token):
    marker = uuid.uuid4().hex[:6]
    ids = {"match": f"search-{marker}-a", "other": f"search-{marker}-b"}
    with httpx.Client(base_url=daphne.url, headers={"Authorization": f"Bearer {api_token}"}) as api:
        api.put(
            f"/conversations/{ids['match']}/title", json={"title": f"Notes about {marker} pasta"}
        )
        api.put(f"/conversations/{ids['other']}/title", json={"title": f"Unrelated {marker}"})
    open_new_chat(page, daphne)
    search = page.get_by_label("Search conversations")
    search.fill("pasta")  # not the start of the title
    expect(entry(page, ids["match"])).to_have_count(1)
    expect(entry(page, ids["other"])).to_have_count(0)
    assert page.locator("ul#conversation-list").count() == 1
    search.fill(marker)
    expect(page.locator("#conversation-list li[data-conversation]")).to_have_count(2)
    search.fill("")
    expect(entry(page, ids["other"])).to_have_count(1)
    assert page.locator("ul#conversation-list").count() == 1

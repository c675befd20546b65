"""The Django admin, driven as a superuser through the test client."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from chat.auth import api_token_create, user_for_token
from chat.models import ApiToken, Attachment, Chunk, Conversation, QueuedMessage, Tab, Turn
from chat.runtime import Message
from chat.services._log import chunks_append, conversation_ensure, queue_push

pytestmark = pytest.mark.django_db


def _text(text: str) -> dict:
    return {"type": "text", "text": text}


@pytest.fixture
def conversation(user):
    conversation = conversation_ensure(user=user, conversation_id="conv-1", title="Trip planning")
    chunks_append(
        conversation_id="conv-1",
        messages=[
            Message("user", [_text("where to go")]),
            Message(
                "assistant",
                [
                    {"type": "thinking", "text": "hmm"},
                    {"type": "tool-call", "toolCallId": "c1", "toolName": "search", "input": {}},
                ],
            ),
            Message(
                "tool",
                [
                    {
                        "type": "tool-result",
                        "toolCallId": "c1",
                        "toolName": "search",
                        "content": "lisbon",
                        "isError": False,
                    }
                ],
            ),
        ],
        turn_id="turn-1-abcdef",
    )
    return conversation


def test_every_changelist_renders(admin_client, user, conversation):
    Turn.objects.create(id="turn-1-abcdef", conversation=conversation, worker="w-7")
    queue_push(conversation_id="conv-1", text="and then?")
    Tab.objects.create(user=user, conversation=conversation)
    api_token_create(user=user, name="laptop")
    Attachment.objects.create(
        id="att_1", owner=user, conversation=conversation, kind="image", name="beach.png",
        media_type="image/png", size=2048, width=640, height=480, sha256="0" * 64,
        storage_name="1/att_1.png",
    )  # fmt: skip
    expected = {
        "conversation": "Trip planning",
        "chunk": "search(",
        "turn": "w-7",
        "queuedmessage": "and then?",
        "tab": "conv-1",
        "apitoken": "laptop",
        "attachment": "beach.png",
    }

    for model, needle in expected.items():
        response = admin_client.get(reverse(f"admin:chat_{model}_changelist"))
        assert response.status_code == 200, model
        assert needle in response.content.decode(), model


def test_conversations_search_and_filter(admin_client, user, conversation):
    conversation_ensure(user=user, conversation_id="conv-2", title="Taxes", status="active")
    url = reverse("admin:chat_conversation_changelist")

    found = admin_client.get(url, {"q": "trip"}).content.decode()
    active = admin_client.get(url, {"status__exact": "active"}).content.decode()

    assert "Trip planning" in found and "Taxes" not in found
    assert "Taxes" in active and "Trip planning" not in active


def test_conversation_log_link_lists_its_chunks_in_seq_order(admin_client, user, conversation):
    other = conversation_ensure(user=user, conversation_id="conv-2")
    Chunk.objects.create(
        conversation=other, seq=1, message=1, role="user", type="text", payload=_text("elsewhere")
    )
    # Rows inserted out of seq order, so only ordering by seq lists them first-second-third.
    for seq, word in [(7, "third"), (5, "first"), (6, "second")]:
        Chunk.objects.create(
            conversation=conversation, seq=seq, message=seq, role="user", type="text",
            payload=_text(word),
        )  # fmt: skip

    changelist = admin_client.get(reverse("admin:chat_conversation_changelist")).content.decode()
    link = re.search(r'href="([^"]*conversation__id__exact=conv-1)"', changelist)
    assert link, changelist
    page = admin_client.get(link.group(1).replace("&amp;", "&")).content.decode()

    seqs = [int(s) for s in re.findall(r'class="field-seq"><a [^>]*>(\d+)</a>', page)]
    assert seqs == [1, 2, 3, 4, 5, 6, 7]
    assert "elsewhere" not in page
    assert page.index("first") < page.index("second") < page.index("third")
    assert "search({})" in page and "search → lisbon" in page


def test_chunks_cannot_be_added_changed_or_deleted(admin_client, conversation):
    chunk = Chunk.objects.get(conversation=conversation, seq=1)
    change_url = reverse("admin:chat_chunk_change", args=[chunk.pk])

    assert admin_client.get(reverse("admin:chat_chunk_add")).status_code == 403
    assert admin_client.get(reverse("admin:chat_chunk_delete", args=[chunk.pk])).status_code == 403
    assert admin_client.get(change_url).status_code == 200  # viewable
    admin_client.post(change_url, {"seq": 99, "role": "system", "type": "text", "payload": "{}"})

    chunk.refresh_from_db()
    assert (chunk.seq, chunk.role, chunk.payload) == (1, "user", _text("where to go"))


def test_conversation_title_edit_keeps_the_log_counters(admin_client, conversation):
    url = reverse("admin:chat_conversation_change", args=["conv-1"])
    model = "local/smollm2-135m-instruct"  # the embedded default catalog's model
    form = {"title": "Lisbon", "model": model, "reasoning_effort": "low", "cwd": ""}

    response = admin_client.post(url, form)

    assert response.status_code == 302
    conversation.refresh_from_db()
    assert (conversation.title, conversation.model, conversation.reasoning_effort) == (
        "Lisbon",
        model,
        "low",
    )
    assert (conversation.last_seq, conversation.last_message_ordinal) == (4, 3)


def test_conversation_edits_are_checked_like_everywhere_else(admin_client, conversation):
    """The admin goes through the services: an unknown model is refused with their message."""
    url = reverse("admin:chat_conversation_change", args=["conv-1"])
    form = {"title": "Porto", "model": "nowhere/x", "reasoning_effort": "low", "cwd": ""}

    response = admin_client.post(url, form, follow=True)

    messages = [str(m) for m in response.context["messages"]]
    assert any("model: unknown model 'nowhere/x'" in m for m in messages), messages
    conversation.refresh_from_db()
    assert (conversation.title, conversation.model) == ("Porto", "")


def test_api_tokens_never_show_the_digest_and_can_be_revoked(admin_client, user):
    token = api_token_create(user=user, name="laptop")
    row = ApiToken.objects.get()
    changelist = reverse("admin:chat_apitoken_changelist")

    pages = (
        admin_client.get(changelist).content.decode()
        + admin_client.get(reverse("admin:chat_apitoken_change", args=[row.pk])).content.decode()
    )
    assert row.prefix in pages
    assert row.digest not in pages and token not in pages
    assert user_for_token(token) == user

    response = admin_client.post(changelist, {"action": "revoke", "_selected_action": [row.pk]})

    assert response.status_code == 302
    row.refresh_from_db()
    assert row.revoked
    assert user_for_token(token) is None


def test_queued_messages_are_cancelled_by_the_action(admin_client, conversation):
    keep = queue_push(conversation_id="conv-1", text="keep me")
    drop = queue_push(conversation_id="conv-1", text="drop me")

    response = admin_client.post(
        reverse("admin:chat_queuedmessage_changelist"),
        {"action": "cancel", "_selected_action": [drop.pk]},
    )

    assert response.status_code == 302
    assert list(QueuedMessage.objects.values_list("pk", flat=True)) == [keep.pk]
    assert Conversation.objects.filter(pk="conv-1").exists()


def test_attachment_chunks_are_described_and_attachments_are_view_only(admin_client, user):
    image = {
        "type": "image",
        "attachmentId": "att_9",
        "name": "cat.png",
        "mediaType": "image/png",
        "size": 12800,
        "width": 640,
        "height": 480,
    }
    file = {"type": "file", "attachmentId": "att_8", "name": "a.csv", "size": 10, "path": "a-1.csv"}
    conversation_ensure(user=user, conversation_id="conv-9")
    chunks_append(conversation_id="conv-9", messages=[Message("user", [_text("see"), image, file])])
    Attachment.objects.create(
        id="att_9", owner=user, kind="image", name="cat.png", media_type="image/png",
        size=12800, sha256="0" * 64, storage_name="1/att_9.png",
    )  # fmt: skip

    chunks = admin_client.get(reverse("admin:chat_chunk_changelist")).content.decode()
    assert "image cat.png (PNG, 640×480, 13 KiB)" in chunks
    assert "file a.csv (10 bytes) → a-1.csv" in chunks
    change = admin_client.get(reverse("admin:chat_attachment_change", args=["att_9"]))
    assert change.status_code == 200
    assert "1/att_9.png" not in change.content.decode()  # where the bytes are is not shown
    delete = admin_client.post(reverse("admin:chat_attachment_delete", args=["att_9"]))
    assert delete.status_code == 403 and Attachment.objects.filter(pk="att_9").exists()

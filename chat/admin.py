"""The operators' view of conversations, their append-only logs, turns, queues, tabs and tokens.

The log is append-only: chunks (and turns, which the runtime owns) are view-only here. What an
operator changes goes through the same services as every other transport, acting as the
conversation's owner, so the owner's open pages hear about it; a service's refusal is shown as
an error message.
"""

from __future__ import annotations

import json

from asgiref.sync import async_to_sync
from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from chat import services
from chat.errors import DomainError
from chat.models import ApiToken, Attachment, Chunk, Conversation, QueuedMessage, Tab, Turn
from chat.runtime.attachments import ATTACHMENT_TYPES, attachment_label

# The form fields an operator may change, and the service that changes each.
CONVERSATION_SETTINGS = {
    "title": (services.conversation_rename, "title"),
    "model": (services.conversation_set_model, "model"),
    "reasoning_effort": (services.conversation_set_reasoning_effort, "reasoning_effort"),
    "cwd": (services.conversation_set_cwd, "cwd"),
}

PREVIEW_LENGTH = 80


def _shorten(text: str, length: int = PREVIEW_LENGTH) -> str:
    text = " ".join(text.split())
    return text if len(text) <= length else text[: length - 1] + "…"


class ViewOnlyAdmin(admin.ModelAdmin):
    """Browse, never add, change or delete."""

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = [
        "id", "title", "owner", "status", "model", "archived_at", "last_activity_at", "log_link",
    ]  # fmt: skip
    list_filter = ["status", ("archived_at", admin.EmptyFieldListFilter)]
    search_fields = ["id", "title"]
    list_select_related = ["owner"]
    ordering = ["-last_activity_at", "id"]
    fields = [
        "id",
        "owner",
        "title",
        "status",
        "model",
        "reasoning_effort",
        "cwd",
        "created_at",
        "last_activity_at",
        "last_seq",
        "last_message_ordinal",
        "archived_at",
        "forked_from",
        "forked_at_seq",
        "system_prompt",
        "log_link",
    ]
    # Status and the log counters belong to the runtime and services.chunks_append.
    readonly_fields = [
        "id",
        "owner",
        "status",
        "created_at",
        "last_activity_at",
        "last_seq",
        "last_message_ordinal",
        "archived_at",
        "forked_from",
        "forked_at_seq",
        "system_prompt",
        "log_link",
    ]

    @admin.display(description="log")
    def log_link(self, obj: Conversation) -> str:
        url = reverse("admin:chat_chunk_changelist") + f"?conversation__id__exact={obj.pk}"
        return format_html('<a href="{}">{} chunks</a>', url, obj.last_seq)

    def has_add_permission(self, request) -> bool:
        return False  # conversations start from a client's first message

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # deleting would drop chunks, and the log is append-only

    def save_model(self, request, obj, form, change) -> None:
        for name in form.changed_data:
            service, argument = CONVERSATION_SETTINGS[name]
            try:
                async_to_sync(service)(
                    user=obj.owner, conversation_id=obj.pk, **{argument: form.cleaned_data[name]}
                )
            except DomainError as exc:
                self.message_user(request, f"{name}: {exc.message}", messages.ERROR)

    actions = ["close", "archive", "restore", "delete_for_good"]

    def get_queryset(self, request):
        # Deleted conversations are tombstones (an id and an owner): nothing to manage.
        return super().get_queryset(request).filter(deleted_at__isnull=True)

    @admin.action(description="Close the selected conversations (stops their turns)")
    def close(self, request, queryset) -> None:
        for conversation in queryset.select_related("owner"):
            async_to_sync(services.conversation_close)(
                user=conversation.owner, conversation_id=conversation.pk
            )
        self.message_user(request, f"Closed {queryset.count()} conversation(s).")

    def _as_owner(self, request, queryset, service, done: str) -> None:
        """Run ``service`` on each selected conversation as its owner (as every transport)."""
        count = 0
        for conversation in list(queryset.select_related("owner")):
            try:
                async_to_sync(service)(user=conversation.owner, conversation_id=conversation.pk)
                count += 1
            except DomainError as exc:
                self.message_user(request, f"{conversation.pk}: {exc.message}", messages.ERROR)
        self.message_user(request, f"{done} {count} conversation(s).")

    @admin.action(description="Archive the selected conversations")
    def archive(self, request, queryset) -> None:
        self._as_owner(request, queryset, services.conversation_archive, "Archived")

    @admin.action(description="Restore the selected archived conversations")
    def restore(self, request, queryset) -> None:
        self._as_owner(request, queryset, services.conversation_restore, "Restored")

    @admin.action(description="Delete the selected conversations for good (stops their turns)")
    def delete_for_good(self, request, queryset) -> None:
        self._as_owner(request, queryset, services.conversation_delete, "Deleted")


@admin.register(Chunk)
class ChunkAdmin(ViewOnlyAdmin):
    list_display = ["seq", "conversation", "role", "type", "preview", "turn_id", "step_id"]
    list_display_links = ["seq"]
    list_select_related = ["conversation"]
    list_filter = ["role", "type"]
    ordering = ["conversation", "seq"]
    list_per_page = 200
    # A log can be long: skip counting the whole table on every page.
    show_full_result_count = False

    @admin.display(description="preview")
    def preview(self, obj: Chunk) -> str:
        return chunk_preview(obj.payload)


def chunk_preview(chunk: dict) -> str:
    """One short line describing a wire chunk (docs/protocol.md#2-chunks-and-the-log)."""
    kind = chunk.get("type")
    if kind == "tool-call":
        return _shorten(f"{chunk.get('toolName')}({json.dumps(chunk.get('input'))})")
    if kind == "tool-result":
        body = chunk.get("content")
        body = body if isinstance(body, str) else json.dumps(body)
        mark = "error: " if chunk.get("isError") else ""
        return _shorten(f"{chunk.get('toolName')} → {mark}{body}")
    if kind == "error":
        return _shorten(str(chunk.get("message", "")))
    if kind in ATTACHMENT_TYPES:
        return _shorten(attachment_label(chunk))
    return _shorten(str(chunk.get("text", "")))


@admin.register(Attachment)
class AttachmentAdmin(ViewOnlyAdmin):
    """What was attached, by whom, to which conversation. The files themselves are their
    owners' only (docs/security.md, Attachments): the admin shows no content."""

    list_display = [
        "id",
        "owner",
        "conversation",
        "kind",
        "name",
        "media_type",
        "size",
        "dimensions",
        "created_at",
        "sent_at",
    ]
    list_filter = ["kind"]
    list_select_related = ["owner", "conversation"]
    search_fields = ["id", "name", "owner__username", "conversation__id"]
    exclude = ["storage_name"]

    @admin.display(description="dimensions")
    def dimensions(self, obj: Attachment) -> str:
        return f"{obj.width}×{obj.height}" if obj.width and obj.height else ""


@admin.register(Turn)
class TurnAdmin(ViewOnlyAdmin):
    list_display = [
        "id",
        "conversation",
        "status",
        "finish_reason",
        "model",
        "worker",
        "started_at",
        "ended_at",
        "heartbeat_at",
    ]
    list_filter = ["status", "finish_reason"]
    search_fields = ["id", "conversation__id"]


@admin.register(QueuedMessage)
class QueuedMessageAdmin(ViewOnlyAdmin):
    list_display = ["id", "conversation", "text_preview", "queued_at"]
    search_fields = ["conversation__id"]
    actions = ["cancel"]

    @admin.display(description="text")
    def text_preview(self, obj: QueuedMessage) -> str:
        return _shorten(obj.text)

    @admin.action(description="Cancel the selected queued messages")
    def cancel(self, request, queryset) -> None:
        cancelled = 0
        for message in queryset.select_related("conversation__owner"):
            done, _ = async_to_sync(services.queue_cancel)(
                user=message.conversation.owner,
                conversation_id=message.conversation_id,
                message_id=str(message.pk),
            )
            cancelled += done
        self.message_user(request, f"Cancelled {cancelled} queued message(s).")

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # cancelling goes through the "cancel" action (services.queue_cancel)


@admin.register(Tab)
class TabAdmin(ViewOnlyAdmin):
    list_display = ["id", "user", "conversation", "position", "active"]
    list_select_related = ["user", "conversation"]
    search_fields = ["user__username", "conversation__id"]


@admin.register(ApiToken)
class ApiTokenAdmin(ViewOnlyAdmin):
    """Tokens are created by ``manage.py dispatch_token``; here they are listed and revoked."""

    list_display = ["prefix", "name", "user", "created_at", "last_used_at", "revoked"]
    list_filter = ["revoked"]
    search_fields = ["prefix", "name", "user__username"]
    fields = ["prefix", "name", "user", "created_at", "last_used_at", "revoked"]  # no digest
    actions = ["revoke"]

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request, queryset) -> None:
        revoked = queryset.filter(revoked=False).update(revoked=True)
        self.message_user(request, f"Revoked {revoked} token(s).")

"""Tabs: a user's open conversations, persisted server-side so every device shows the same.

Each change is announced on the user's tabs group after commit; the web app's sockets
re-render their tab bar from the database when they hear it.
"""

from __future__ import annotations

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from chat.models import (
    Conversation,
    Tab,
)
from chat.selectors import NotFound
from chat.services.log import conversation_update


def tabs_group_for(user_id: int) -> str:
    """The channel-layer group of a user's web app sockets (tab bar updates)."""
    return f"tabs.{user_id}"


def _tabs_changed(user) -> None:
    group = tabs_group_for(user.pk)
    transaction.on_commit(
        lambda: async_to_sync(get_channel_layer().group_send)(group, {"type": "ui.tabs"})
    )


@transaction.atomic
def tab_open(*, user, conversation_id: str) -> Tab:
    """Open the caller's conversation as a tab (last position) and make it the active one.

    Opening a tab that is already open only activates it. NotFound for someone else's.
    """
    conversation = Conversation.objects.filter(pk=conversation_id).first()
    if conversation is None or conversation.owner_id != user.pk:
        raise NotFound(conversation_id)
    tab = Tab.objects.select_for_update().filter(user=user, conversation=conversation).first()
    if tab is None:
        last = Tab.objects.filter(user=user).order_by("-position").first()
        tab = Tab.objects.create(
            user=user, conversation=conversation, position=last.position + 1 if last else 0
        )
        _tabs_changed(user)
    tab_activate(user=user, conversation_id=conversation_id)
    tab.active = True
    return tab


@transaction.atomic
def tab_close(*, user, conversation_id: str) -> bool:
    """Remove the tab (the conversation stays in history); whether there was one."""
    deleted, _ = Tab.objects.filter(user=user, conversation_id=conversation_id).delete()
    if deleted:
        _tabs_changed(user)
    return deleted > 0


@transaction.atomic
def tab_rename(*, user, conversation_id: str, title: str) -> Conversation:
    """Set the conversation's title (PUT title semantics) and update the user's tab bars."""
    conversation = Conversation.objects.filter(pk=conversation_id).first()
    if conversation is None or conversation.owner_id != user.pk:
        raise NotFound(conversation_id)
    conversation_update(conversation=conversation, title=title)
    _tabs_changed(user)
    return conversation


@transaction.atomic
def tab_activate(*, user, conversation_id: str) -> None:
    """Mark the tab the user looks at; ``/`` reopens it. Other devices keep their own view,
    so nothing is announced."""
    Tab.objects.filter(user=user).exclude(conversation_id=conversation_id).update(active=False)
    Tab.objects.filter(user=user, conversation_id=conversation_id).update(active=True)


def tab_list(*, user) -> list[Tab]:
    """The user's tabs in order, with their conversations."""
    return list(Tab.objects.filter(user=user).select_related("conversation").order_by("position"))

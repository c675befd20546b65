"""A conversation's settings and place in the user's workspace: title, model, reasoning effort,
working directory, open (as a tab) and closed, and the order of the user's tabs.

Tabs are the user's open conversations, persisted server-side so every device shows the same;
every change is announced on the user's group (``user.conversations``) once committed, and the
web app's sockets re-render their tab bar and conversation list from the database when they
hear it.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async

from chat import selectors
from chat.errors import InvalidInput, NotFound, Unavailable
from chat.models import Conversation, Tab
from chat.services import _log
from chat.services.events import publish_on_commit, user_group, write
from chat.services.inputs import ConversationId, Cwd, ModelName, ReasoningEffort, Title, check
from chat.services.turns import abort_running, resolve_model, status_changed
from chat.services.workspace import conversation_dir

MAX_TABS = 100


async def conversation_rename(*, user, conversation_id: str, title: str) -> Conversation:
    """Set the title (whitespace folded, 1–200 characters); creates the conversation for the
    caller when it does not exist yet (clients mint ids)."""
    title = check("title", Title, title)
    return await _update(user, conversation_id, title=title)


async def conversation_set_model(*, user, conversation_id: str, model: str) -> Conversation:
    """Set the conversation's model (sticky); InvalidInput for a model the catalog lacks."""
    resolved = await resolve_model(check("model", ModelName, model))
    return await _update(user, conversation_id, model=resolved.name)


async def conversation_set_reasoning_effort(
    *, user, conversation_id: str, reasoning_effort: str
) -> Conversation:
    effort = check("reasoningEffort", ReasoningEffort, reasoning_effort)
    return await _update(user, conversation_id, reasoning_effort=effort)


async def conversation_set_cwd(*, user, conversation_id: str, cwd: str) -> Conversation:
    """Set the working directory: a path inside the user's workspace ("" is its root)."""
    cwd = check("cwd", Cwd, cwd)
    conversation_dir(owner_id=user.pk, cwd=cwd)
    return await _update(user, conversation_id, cwd=cwd)


async def _update(user, conversation_id: str, **fields: Any) -> Conversation:
    check("conversationId", ConversationId, conversation_id)
    return await write(_do_update, user=user, conversation_id=conversation_id, fields=fields)


def _do_update(*, user, conversation_id: str, fields: dict[str, Any]) -> Conversation:
    conversation = _log.conversation_ensure(user=user, conversation_id=conversation_id)
    changed = {k: v for k, v in fields.items() if getattr(conversation, k) != v}
    if changed:
        _log.conversation_update(conversation=conversation, **changed)
        _conversations_changed(user)
    return conversation


async def conversation_close(*, user, conversation_id: str) -> bool:
    """Close: the running turn is stopped, the status becomes ``closed`` and the conversation
    leaves the user's tabs; it stays in the list and can be opened again. Whether a turn was
    stopped. Closing a conversation that does not exist does nothing."""
    check("conversationId", ConversationId, conversation_id)
    try:
        closed = await write(_do_close, user=user, conversation_id=conversation_id)
    except Unavailable:
        # The database refuses the write: the conversation cannot be closed now, but its
        # running turn still stops (closing always ends it).
        if await database_sync_to_async(selectors.conversation_for_user)(
            user=user, conversation_id=conversation_id
        ):
            await abort_running(conversation_id)
        raise
    return await abort_running(conversation_id) if closed else False


def _do_close(*, user, conversation_id: str) -> bool:
    conversation = selectors.conversation_for_user(user=user, conversation_id=conversation_id)
    if conversation is None:
        return False
    _log.conversation_set_status(conversation_id=conversation_id, status=Conversation.Status.CLOSED)
    status_changed(conversation_id=conversation_id, status=Conversation.Status.CLOSED)
    Tab.objects.filter(user=user, conversation_id=conversation_id).delete()
    _conversations_changed(user)
    return True


async def conversation_open(*, user, conversation_id: str) -> Conversation:
    """Open the conversation as the user's current tab (the last one when it is new); a closed
    conversation is reopened (status ``idle``), an archived one restored. NotFound when it
    does not exist."""
    check("conversationId", ConversationId, conversation_id)
    return await write(_do_open, user=user, conversation_id=conversation_id)


def _do_open(*, user, conversation_id: str) -> Conversation:
    conversation = selectors.conversation_for_user(user=user, conversation_id=conversation_id)
    if conversation is None:
        raise NotFound.conversation(conversation_id)
    changed = False
    if conversation.status == Conversation.Status.CLOSED:
        conversation.status = Conversation.Status.IDLE
        _log.conversation_set_status(conversation_id=conversation_id, status=conversation.status)
        status_changed(conversation_id=conversation_id, status=conversation.status)
        changed = True
    if conversation.archived_at is not None:
        conversation.archived_at = None
        conversation.save(update_fields=["archived_at"])
        changed = True
    tabs = Tab.objects.select_for_update().filter(user=user)
    if not tabs.filter(conversation=conversation).exists():
        if tabs.count() >= MAX_TABS:
            raise InvalidInput(f"at most {MAX_TABS} tabs can be open; close one first")
        last = tabs.order_by("-position").first()
        Tab.objects.create(
            user=user, conversation=conversation, position=last.position + 1 if last else 0
        )
        changed = True
    # Which tab the user looks at is this device's view: ``/`` reopens it; not announced.
    tabs.exclude(conversation=conversation).update(active=False)
    tabs.filter(conversation=conversation).update(active=True)
    if changed:
        _conversations_changed(user)
    return conversation


async def tabs_reorder(*, user, conversation_ids: list[str]) -> list[str]:
    """Put the user's tabs in this order (every open tab exactly once); the new order."""
    conversation_ids = check("conversationIds", list[ConversationId], conversation_ids)
    return await write(_do_reorder, user=user, conversation_ids=conversation_ids)


def _do_reorder(*, user, conversation_ids: list[str]) -> list[str]:
    tabs = {tab.conversation_id: tab for tab in Tab.objects.select_for_update().filter(user=user)}
    if sorted(conversation_ids) != sorted(tabs):
        raise InvalidInput("must name every open tab exactly once", field="conversationIds")
    for position, conversation_id in enumerate(conversation_ids):
        tabs[conversation_id].position = position
    Tab.objects.bulk_update(tabs.values(), ["position"])
    _conversations_changed(user)
    return conversation_ids


def _conversations_changed(user) -> None:
    """Tell every page of the user that their conversation list or tabs changed."""
    publish_on_commit(user_group(user.pk), {"type": "user.conversations"})

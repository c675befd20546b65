"""The web app's pages (SPEC §6) and the page parts the UI socket re-renders.

The page is complete without its socket: the committed history is rendered here. Only the
running turn is left out (its chunks are excluded by turn id); the socket replays it, then
streams it live (chat.ui).
"""

from __future__ import annotations

import re
import uuid

from asgiref.sync import async_to_sync
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET

from chat import services
from chat.models import (
    CONVERSATION_ID_PATTERN,
    DEFAULT_REASONING_EFFORT,
    REASONING_EFFORTS,
    Chunk,
    Conversation,
    Tab,
    Turn,
)
from chat.selectors import NotFound, conversation_for_user, conversation_list, queue_list
from chat.transcript import TurnView, id_prefixes, turns_from_history
from metrics.format import format_tokens
from metrics.selectors import conversation_turn_metrics

CONVERSATION_LIST_LIMIT = 50


# ---------------------------------------------------------------------- page parts


def history_snapshot(*, conversation_id: str) -> tuple[list[TurnView], int, Turn | None]:
    """(committed turns, the seq of the last chunk among them, the running turn or None).

    The running turn is read in the same query as the chunks it excludes, so a turn that
    starts meanwhile is either wholly in the history or wholly left to the live replay.
    """
    running = Turn.objects.filter(conversation_id=conversation_id, status=Turn.Status.RUNNING)
    turn = running.first()
    # Also exclude the turn read above: if it seals before the chunks are read, its sealing
    # event (already on its way to the socket) is what moves it into the history.
    rows = Chunk.objects.filter(conversation_id=conversation_id).exclude(
        turn_id__in=running.values("id")
    )
    if turn is not None:
        rows = rows.exclude(turn_id=turn.id)
    rows = list(rows.order_by("seq").values("seq", "turn_id", "message", "role", "payload"))
    turns = turns_from_history(
        [{**row, "chunk": row["payload"]} for row in rows],
        conversation_turn_metrics(conversation_id=conversation_id),
    )
    return turns, rows[-1]["seq"] if rows else 0, turn


def sealed_turn(*, conversation_id: str, turn_id: str) -> tuple[TurnView | None, int]:
    """One sealed turn rendered from the database, and the seq of its last chunk."""
    rows = list(
        Chunk.objects.filter(conversation_id=conversation_id, turn_id=turn_id)
        .order_by("seq")
        .values("seq", "turn_id", "message", "role", "payload")
    )
    if not rows:
        return None, 0
    turns = turns_from_history(
        [{**row, "chunk": row["payload"]} for row in rows],
        conversation_turn_metrics(conversation_id=conversation_id),
    )
    return turns[0], rows[-1]["seq"]


def turn_number(*, conversation_id: str) -> int:
    """The number the conversation's next sealed turn will have (sealed turns + 1)."""
    return len(conversation_turn_metrics(conversation_id=conversation_id)) + 1


def tabs_context(*, user, current: str) -> dict:
    """The tab bar: the user's tabs with short unique id prefixes; ``current`` is this page's."""
    tabs = services.tab_list(user=user)
    prefixes = id_prefixes([tab.conversation_id for tab in tabs])
    items = [
        {
            "id": tab.conversation_id,
            "prefix": prefixes[tab.conversation_id],
            "title": tab.conversation.title,
            "active": tab.conversation.status == Conversation.Status.ACTIVE,
            "current": tab.conversation_id == current,
        }
        for tab in tabs
    ]
    return {"tabs": items, "draft": not any(item["current"] for item in items), "current": current}


def status_of(*, conversation_id: str) -> str:
    status = Conversation.objects.filter(pk=conversation_id).values_list("status", flat=True)
    return status.first() or Conversation.Status.IDLE


def model_context(*, models: dict, selected: str, credential: str | None = None) -> dict:
    """The two model selects: credentials, and the chosen credential's models."""
    credentials = list(dict.fromkeys(name.partition("/")[0] for name in models))
    if credential is None:
        credential = selected.partition("/")[0] if selected in models else ""
    if credential not in credentials:
        credential = credentials[0] if credentials else ""
    choices = [name for name in models if name.partition("/")[0] == credential]
    if selected not in choices:
        selected = choices[0] if choices else ""
    return {
        "credentials": credentials,
        "credential": credential,
        "model_choices": [(name, name.partition("/")[2]) for name in choices],
        "model": selected,
    }


def gauge_context(*, models: dict, model: str, context_size: int | None) -> dict:
    """``contextSize / contextWindow`` for the context gauge."""
    info = models.get(model)
    window = info.context_window if info is not None else None
    ratio = min(context_size / window, 1.0) if context_size and window else 0.0
    return {
        "gauge_size": format_tokens(context_size) if context_size is not None else "–",
        "gauge_window": format_tokens(window) if window else "",
        "gauge_percent": round(ratio * 100),
    }


def last_context_size(*, conversation_id: str) -> int | None:
    turns = conversation_turn_metrics(conversation_id=conversation_id)
    return next((t.context_size for t in reversed(turns) if t.context_size is not None), None)


def conversation_page_context(*, user, conversation_id: str) -> dict:
    """Everything the conversation page shows, read from the database."""
    from chat.providers import get_catalog

    conversation = conversation_for_user(user=user, conversation_id=conversation_id)
    turns, seq, running = history_snapshot(conversation_id=conversation_id)
    models = async_to_sync(get_catalog().models)()
    selected = (conversation.model if conversation else "") or get_catalog().default_model
    return {
        "conversation_id": conversation_id,
        "conversation": conversation,
        "title": conversation.title if conversation and conversation.title else "New chat",
        "status": conversation.status if conversation else Conversation.Status.IDLE,
        "turns": turns,
        "history_seq": seq,
        "running": running is not None,
        "queue": queue_list(conversation_id=conversation_id),
        "efforts": REASONING_EFFORTS,
        "effort": conversation.reasoning_effort if conversation else DEFAULT_REASONING_EFFORT,
        "conversations": conversation_list(user=user)[:CONVERSATION_LIST_LIMIT],
        **tabs_context(user=user, current=conversation_id),
        **model_context(models=models, selected=selected),
        **gauge_context(
            models=models,
            model=selected,
            context_size=last_context_size(conversation_id=conversation_id),
        ),
    }


# ---------------------------------------------------------------------- pages


@login_required
@require_GET
def home(request):
    """Reopen the tab the user looked at last; a new chat when there is none."""
    tab = Tab.objects.filter(user=request.user).order_by("-active", "position").first()
    if tab is None:
        return redirect("chat:new")
    return redirect("chat:conversation", conversation_id=tab.conversation_id)


@login_required
@require_GET
def new_chat(request):
    """A draft: a fresh conversation id; it becomes a tab on its first message."""
    return redirect("chat:conversation", conversation_id=str(uuid.uuid4()))


@login_required
@require_GET
def conversation_page(request, conversation_id: str):
    """The app: tabs, the conversation list, the transcript, the queue and the composer.

    Opening an existing conversation (a link from the list) opens it as a tab.
    """
    if not re.fullmatch(CONVERSATION_ID_PATTERN, conversation_id):
        raise Http404("no such conversation")
    try:
        conversation = conversation_for_user(user=request.user, conversation_id=conversation_id)
        if conversation is not None:
            services.tab_open(user=request.user, conversation_id=conversation_id)
    except NotFound:
        raise Http404("no such conversation") from None
    context = conversation_page_context(user=request.user, conversation_id=conversation_id)
    return render(request, "chat/page.html", context)


@login_required
@require_GET
def conversation_search(request):
    """The conversation list filtered by ``q`` (title or id prefix), as a fragment."""
    q = request.GET.get("q", "").strip()
    rows = conversation_list(user=request.user, q=q)[:CONVERSATION_LIST_LIMIT]
    return render(request, "chat/_conversation_list.html", {"conversations": rows})

"""What the web app's pages and fragments show, built from selectors (chat.selectors).

Used by the page views (chat.views) and by the web app's socket (chat.sockets.webapp), which
re-renders the same fragments when something changes. Everything here is synchronous and only
reads; the model catalog is passed in (it is asynchronous).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings

from chat import selectors
from chat.config import get_config
from chat.models import DEFAULT_REASONING_EFFORT, REASONING_EFFORTS, Conversation
from chat.runtime.attachments import ATTACHMENT_TYPES
from chat.search import Hit
from chat.services.prompts import effective_template
from chat.services.turns import compact_threshold
from chat.transcript import TurnView, id_prefixes, open_fence, turns_from_history
from metrics.format import format_tokens

CONVERSATION_LIST_LIMIT = 50


@dataclass(frozen=True)
class Transcript:
    """A window of the committed turns (docs/protocol.md#8-web-app-socket) and its cursors:
    ``older``/``newer`` are the seqs the sentinels load from (None: nothing more that way);
    ``seq`` is the conversation's latest committed seq (the page's resync cursor)."""

    turns: list[TurnView]
    older: int | None
    newer: int | None
    seq: int
    running: bool


def transcript(
    *,
    conversation_id: str,
    before: int | None = None,
    after: int | None = None,
    at: int | None = None,
) -> Transcript:
    """The newest turns; or those before ``before`` or after ``after`` (scrolling), or around
    ``at`` (a link to a seq): see ``selectors.transcript_window``."""
    window = selectors.transcript_window(
        conversation_id=conversation_id, before_seq=before, after_seq=after, at_seq=at
    )
    numbers = {turn_id: turn.number for turn_id, turn in window.turns.items()}
    previous = ""
    first = window.rows[0] if window.rows else None
    if first is not None and first["chunk"].get("continuation"):
        previous = selectors.last_answer_text(
            conversation_id=conversation_id, before_turn=first["turn_id"]
        )
    attachments = _attachments(conversation_id, window.rows)
    turns = turns_from_history(
        window.rows, window.turn_metrics, numbers, attachments, previous_text=previous
    )
    return Transcript(turns, window.older, window.newer, window.seq, window.running is not None)


def sealed_turn(*, conversation_id: str, turn_id: str) -> tuple[TurnView | None, int]:
    """One sealed turn rendered from the database, and the seq of its last chunk."""
    rows, turn, metrics = selectors.turn_rows(conversation_id=conversation_id, turn_id=turn_id)
    if not rows:
        return None, 0
    previous = ""
    if rows[0]["chunk"].get("continuation"):
        previous = selectors.last_answer_text(conversation_id=conversation_id, before_turn=turn_id)
    numbers = {turn_id: turn.number if turn is not None else None}
    attachments = _attachments(conversation_id, rows)
    view = turns_from_history(rows, metrics, numbers, attachments, previous_text=previous)[0]
    return view, rows[-1]["seq"]


def _attachments(conversation_id: str, rows: list[dict]) -> dict[str, tuple[str, str]]:
    """The conversation's attachments the rows name: id → (description, described by)."""
    ids = {
        row["chunk"].get("attachmentId")
        for row in rows
        if row["role"] == "user" and row["chunk"].get("type") in ATTACHMENT_TYPES
    }
    if not ids:
        return {}
    found = selectors.conversation_attachments(conversation_id=conversation_id, ids=ids)
    return {pk: (row.description, row.described_by) for pk, row in found.items()}


def attachment_limits() -> dict:
    """What the composer's attachment tray checks before uploading (the server checks again)."""
    return {
        "attachment_max_bytes": settings.DISPATCH_ATTACHMENT_MAX_BYTES,
        "attachment_max_count": settings.DISPATCH_ATTACHMENTS_PER_MESSAGE,
    }


def live_turn_start(
    *, conversation_id: str, turn_id: str, continuation: bool
) -> tuple[int | None, str]:
    """A running turn's number (None: a compaction turn), and, for a continuation, the code
    fence its answer goes on in when the answer it continues was cut inside a code block."""
    number = selectors.turn_number(turn_id=turn_id)
    if not continuation:
        return number, ""
    text = selectors.last_answer_text(conversation_id=conversation_id, before_turn=turn_id)
    return number, open_fence(text)


def tabs_context(*, user, current: str) -> dict:
    """The tab bar: the user's tabs with short unique id prefixes; ``current`` is this page's."""
    tabs = selectors.tab_list(user=user)
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


def conversation_list_context(*, user, q: str = "", archived: bool = False) -> dict:
    """The sidebar's list: the user's conversations (matching ``q`` when searching)."""
    rows = selectors.conversation_list(user=user, q=q, archived=archived)
    return {
        "conversations": list(rows[:CONVERSATION_LIST_LIMIT]),
        "archived_view": archived,
        "q": q,
    }


def search_context(*, user, q: str) -> dict:
    """Full-text hits for the sidebar (none for a blank query)."""
    hits: list[Hit] = selectors.search_hits(user=user, q=q) if q.strip() else []
    return {"hits": hits, "q": q}


def manage_context(*, user, conversation_id: str) -> dict:
    """The conversation's bar (where it was forked from, its forks, archive and delete) and
    its system prompt panel (template, what it resolved to, the user's presets)."""
    conversation = selectors.conversation_for_user(user=user, conversation_id=conversation_id)
    template, custom = effective_template(conversation)
    forked_from = conversation.forked_from if conversation and conversation.forked_from_id else None
    return {
        "conversation_id": conversation_id,
        "exists": conversation is not None,
        "archived": bool(conversation and conversation.archived_at),
        "forked_from": forked_from,
        "forked_at_seq": conversation.forked_at_seq if conversation else None,
        "forks": selectors.conversation_forks(conversation_id=conversation_id)
        if conversation
        else [],
        "prompt_template": template,
        "prompt_custom": custom,
        "prompt_resolved": conversation.system_prompt
        if conversation and conversation.system_prompt_resolved_for
        else None,
        "prompt_default": get_config().system_prompt_template,
        "presets": selectors.preset_list(user=user),
    }


def theme_context(request) -> dict:
    """Context processor: the signed-in user's theme (``system`` follows the browser)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"theme": "system"}
    return {"theme": selectors.user_theme(user=user)}


def model_context(*, models: dict, selected: str, credential: str | None = None) -> dict:
    """The two model selects (credentials, and the chosen credential's models), and whether
    the chosen model takes a reasoning effort (the Effort control is shown only then)."""
    credentials = list(dict.fromkeys(name.partition("/")[0] for name in models))
    if credential is None:
        credential = selected.partition("/")[0] if selected in models else ""
    if credential not in credentials:
        credential = credentials[0] if credentials else ""
    choices = [name for name in models if name.partition("/")[0] == credential]
    if selected not in choices:
        selected = choices[0] if choices else ""
    info = models.get(selected)
    return {
        "credentials": credentials,
        "credential": credential,
        "model_choices": [(name, name.partition("/")[2]) for name in choices],
        "model": selected,
        "reasoning": bool(info and info.reasoning),
    }


def effort_context(conversation: Conversation | None) -> dict:
    """The Effort control's choices and the conversation's effort."""
    effort = conversation.reasoning_effort if conversation else DEFAULT_REASONING_EFFORT
    return {"efforts": REASONING_EFFORTS, "effort": effort}


def gauge_context(*, models: dict, model: str, context_size: int | None) -> dict:
    """``contextSize / contextWindow`` for the context gauge: the last known context size
    (the conversation's last turn that reported usage) against the model's window; an
    unknown window reads ``? ``, an unknown size ``–``."""
    info = models.get(model)
    window = info.context_window if info is not None else None
    ratio = min(context_size / window, 1.0) if context_size and window else 0.0
    size = format_tokens(context_size) if context_size is not None else "–"
    limit = format_tokens(window) if window else "?"
    return {
        "gauge_size": size,
        "gauge_window": limit,
        "gauge_percent": round(ratio * 100),
        "gauge_label": f"Context: {size} of {limit} tokens"
        + (f" ({round(ratio * 100)}%)" if window and context_size is not None else ""),
    }


def history_context(*, conversation_id: str, view: Transcript) -> dict:
    """What ``chat/_history.html`` renders: the turns and the sentinels around them."""
    return {
        "conversation_id": conversation_id,
        "turns": view.turns,
        "older": view.older,
        "newer": view.newer,
    }


def conversation_page_context(
    *, user, conversation_id: str, models: dict, default_model: str, at: int | None = None
) -> dict:
    """Everything the conversation page shows, read from the database: the newest turns, or
    the turns around ``at`` (a seq)."""
    conversation = selectors.conversation_for_user(user=user, conversation_id=conversation_id)
    view = transcript(conversation_id=conversation_id, at=at)
    selected = (conversation.model if conversation else "") or default_model
    return {
        "conversation_id": conversation_id,
        "conversation": conversation,
        "title": conversation.title if conversation and conversation.title else "New chat",
        "status": conversation.status if conversation else Conversation.Status.IDLE,
        **history_context(conversation_id=conversation_id, view=view),
        "history_seq": view.seq,
        "at": at,
        "running": view.running,
        "threshold": compact_threshold(conversation),
        "queue": selectors.queue_list(conversation_id=conversation_id),
        **effort_context(conversation),
        **attachment_limits(),
        **conversation_list_context(user=user),
        **tabs_context(user=user, current=conversation_id),
        **manage_context(user=user, conversation_id=conversation_id),
        **model_context(models=models, selected=selected),
        **gauge_context(
            models=models,
            model=selected,
            context_size=selectors.last_context_size(conversation_id=conversation_id),
        ),
    }

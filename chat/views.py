"""The web app's pages (docs/protocol.md#8-web-app-socket); their live parts travel over
the ``ws/ui`` socket (chat.sockets.webapp).

The page is complete without its socket: the committed history is rendered here. Only the
running turn is left out; the socket replays it, then streams it live.
"""

from __future__ import annotations

import re
import uuid

from asgiref.sync import sync_to_async
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET

from chat import pages, selectors, services
from chat.errors import NotFound
from chat.models import CONVERSATION_ID_PATTERN
from chat.providers import get_catalog


@login_required
@require_GET
def home(request):
    """Reopen the tab the user looked at last; a new chat when there is none."""
    tab = selectors.tab_last_seen(user=request.user)
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
async def conversation_page(request, conversation_id: str):
    """The app: tabs, the conversation list, the transcript, the queue and the composer.

    Opening an existing conversation (a link from the list) opens it as a tab (reopening it
    when it was closed); an id that does not exist yet is a draft.
    """
    if not re.fullmatch(CONVERSATION_ID_PATTERN, conversation_id):
        raise Http404("no such conversation")
    user = await request.auser()
    try:
        conversation = await sync_to_async(selectors.conversation_for_user)(
            user=user, conversation_id=conversation_id
        )
        # An archived conversation is read here, not opened (which would restore it).
        if conversation is None or conversation.archived_at is None:
            await services.conversation_open(user=user, conversation_id=conversation_id)
    except NotFound:
        exists = await sync_to_async(selectors.conversation_owner_id)(
            conversation_id=conversation_id
        )
        if exists is not None:  # someone else's
            raise Http404("no such conversation") from None
    catalog = get_catalog()
    models = await catalog.models()
    context = await sync_to_async(pages.conversation_page_context)(
        user=user, conversation_id=conversation_id, models=models,
        default_model=catalog.default_model, at=_seq(request.GET.get("at")),
    )  # fmt: skip
    return await sync_to_async(render)(request, "chat/page.html", context)


def _seq(raw: str | None, minimum: int = 1) -> int | None:
    """A seq from a query parameter; None when absent, not an integer or below ``minimum``."""
    if raw is None or not re.fullmatch(r"[0-9]{1,18}", raw) or int(raw) < minimum:
        return None
    return int(raw)


@login_required
@require_GET
def conversation_turns(request, conversation_id: str):
    """The turns before ``?beforeSeq=<seq>`` or after ``?sinceSeq=<seq>`` (the history API's
    cursors; a sentinel scrolled into view), with the next sentinel, as a fragment
    (docs/protocol.md#8-web-app-socket)."""
    if not re.fullmatch(CONVERSATION_ID_PATTERN, conversation_id):
        raise Http404("no such conversation")
    try:
        if (
            selectors.conversation_for_user(user=request.user, conversation_id=conversation_id)
            is None
        ):
            raise Http404("no such conversation")
    except NotFound:
        raise Http404("no such conversation") from None
    before = _seq(request.GET.get("beforeSeq"))
    after = _seq(request.GET.get("sinceSeq"), minimum=0)
    if (before is None) == (after is None):
        return HttpResponseBadRequest("give one of beforeSeq=<seq> or sinceSeq=<seq>")
    view = pages.transcript(conversation_id=conversation_id, before=before, after=after)
    context = pages.history_context(conversation_id=conversation_id, view=view)
    return render(request, "chat/_history.html", context)


@login_required
@require_GET
def conversation_search(request):
    """The sidebar's conversation list, filtered by ``q`` (inside a title, or an id's start;
    ``archived=1``: the archived ones), as a fragment, with the full-text hits of ``q`` in
    messages (oob); ``current`` (the page's conversation) is marked as the current page."""
    q = request.GET.get("q", "").strip()[:500]
    archived = request.GET.get("archived") == "1"
    context = pages.conversation_list_context(user=request.user, q=q, archived=archived)
    context["conversation_id"] = request.GET.get("current", "")
    html = render_to_string("chat/_conversation_list.html", context, request=request)
    hits = pages.search_context(user=request.user, q=q)
    html += render_to_string("chat/_search_results.html", {**hits, "oob": True}, request=request)
    return HttpResponse(html)

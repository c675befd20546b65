"""Managing conversations: forks, archive and restore, export (import and delete are on the
core paths in chat/api.py: ``POST /conversations``, ``DELETE /conversations/{id}``)."""

from __future__ import annotations

from django.http import HttpResponse
from ninja import Router

from chat import exports, selectors, services
from chat.errors import InvalidInput, NotFound
from chat.schemas import ArchiveOut, ConversationOut, Error, ForkIn, ForksOut, conversation_wire
from chat.services.inputs import ConversationId, check

router = Router(tags=["conversations"])
ERRORS = {400: Error, 401: Error, 404: Error}
EXPORT_TYPES = {"md": "text/markdown; charset=utf-8", "json": "application/json"}


def _existing(request, conversation_id: str):
    """The caller's conversation; NotFound when it does not exist (or is not theirs)."""
    check("conversationId", ConversationId, conversation_id)
    conversation = selectors.conversation_for_user(
        user=request.auth, conversation_id=conversation_id
    )
    if conversation is None:
        raise NotFound.conversation(conversation_id)
    return conversation


@router.post(
    "/conversations/{conversation_id}/fork",
    response={200: ConversationOut, **ERRORS},
    summary="Fork the conversation before beforeSeq (a user message; default: the end)",
)
async def fork(request, conversation_id: str, payload: ForkIn):
    conversation = await services.conversation_fork(
        user=request.auth, conversation_id=conversation_id, before_seq=payload.beforeSeq
    )
    return conversation_wire(conversation)


@router.get(
    "/conversations/{conversation_id}/forks",
    response={200: ForksOut, **ERRORS},
    summary="Where the conversation was forked from, and its forks",
)
def forks(request, conversation_id: str):
    conversation = _existing(request, conversation_id)
    wire = conversation_wire(conversation)
    forks = selectors.conversation_forks(conversation_id=conversation_id)
    return {
        "conversationId": conversation_id,
        "forkedFrom": wire["forkedFrom"],
        "forks": [conversation_wire(f) for f in forks],
    }


@router.post(
    "/conversations/{conversation_id}/archive",
    response={200: ArchiveOut, **ERRORS},
    summary="Archive: hidden from the list and tabs, still readable by id",
)
async def archive(request, conversation_id: str):
    await services.conversation_archive(user=request.auth, conversation_id=conversation_id)
    return {"conversationId": conversation_id, "archived": True}


@router.post(
    "/conversations/{conversation_id}/restore",
    response={200: ArchiveOut, **ERRORS},
    summary="Restore an archived conversation to the list",
)
async def restore(request, conversation_id: str):
    await services.conversation_restore(user=request.auth, conversation_id=conversation_id)
    return {"conversationId": conversation_id, "archived": False}


@router.get(
    "/conversations/{conversation_id}/export",
    response={**ERRORS},
    summary="Download the conversation as Markdown (format=md) or JSON (format=json)",
    openapi_extra={
        "responses": {
            "200": {
                "description": "The file (Content-Disposition: attachment)",
                "content": {"text/markdown": {}, "application/json": {}},
            }
        }
    },
)
def export(request, conversation_id: str, format: str = "md"):  # noqa: A002 - the query name
    if format not in EXPORT_TYPES:
        raise InvalidInput("must be md or json", field="format")
    conversation = _existing(request, conversation_id)
    if format == "json":
        body = exports.export_json(conversation=conversation)
    else:
        body = exports.export_markdown(conversation=conversation)
    response = HttpResponse(body, content_type=EXPORT_TYPES[format])
    name = f"dispatch-{conversation_id[:40]}.{format}"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    return response

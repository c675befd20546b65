"""Routes of long conversations (docs/protocol.md#24-compaction, #411-continue): compacting a
conversation, its compaction threshold, and continuing an answer cut at the length limit."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from ninja import Router

from chat import selectors, services
from chat.routes.ndjson import NDJSON_OPENAPI, turn_events_response
from chat.schemas import CompactionIn, CompactionOut, CompactOut, Error
from chat.services.inputs import ConversationId, check

router = Router(tags=["long conversations"])

ERRORS = {400: Error, 401: Error, 404: Error}


@router.post(
    "/conversations/{conversation_id}/compact",
    response={200: CompactOut, **ERRORS, 409: Error, 429: Error, 422: Error},
    summary="Compact the conversation now: summarize its older part; answers when done",
)
async def compact(request, conversation_id: str):
    running = await services.conversation_compact(
        user=request.auth, conversation_id=conversation_id
    )
    done = await services.compaction_result(running)
    fields = ("seq", "upToSeq", "replacedMessages", "keptMessages", "summary")
    answer = {"conversationId": conversation_id, "turnId": done["turnId"]}
    answer.update({key: done[key] for key in fields})
    answer.update({key: done[key] for key in ("contextSize", "usage") if key in done})
    return answer


def _threshold(request, conversation_id: str) -> dict:
    check("conversationId", ConversationId, conversation_id)
    conversation = selectors.conversation_for_user(
        user=request.auth, conversation_id=conversation_id
    )
    return {
        "conversationId": conversation_id,
        "threshold": services.compact_threshold(conversation),
    }


@router.get(
    "/conversations/{conversation_id}/compaction",
    response={200: CompactionOut, **ERRORS},
    summary="The compaction threshold: % of the context window (0: never automatically)",
)
async def compaction_get(request, conversation_id: str):
    return await sync_to_async(_threshold)(request, conversation_id)


@router.put(
    "/conversations/{conversation_id}/compaction",
    response={200: CompactionOut, **ERRORS},
    summary="Set the compaction threshold: % of the context window (0: never automatically)",
)
async def compaction_put(request, conversation_id: str, payload: CompactionIn):
    conversation = await services.conversation_set_compaction(
        user=request.auth, conversation_id=conversation_id, threshold=payload.threshold
    )
    return {"conversationId": conversation_id, "threshold": conversation.compact_threshold}


@router.post(
    "/conversations/{conversation_id}/continue",
    response={**ERRORS, 409: Error, 429: Error},
    summary="Continue the last answer in a new turn; streams its AgentEvents as NDJSON",
    openapi_extra=NDJSON_OPENAPI,
)
async def continue_(request, conversation_id: str):
    running = await services.turn_continue(user=request.auth, conversation_id=conversation_id)
    return turn_events_response(running)

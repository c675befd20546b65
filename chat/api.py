"""The JSON API (docs/protocol.md#5-http-api): thin — call a service or a selector, shape the answer.

Every refusal is a chat.errors.DomainError, answered with its status and ``{"error": message}``
by one handler; django-ninja's validation errors are told the way the services tell theirs.
"""

from __future__ import annotations

import logging
import re

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import InternalError, OperationalError
from django.http import StreamingHttpResponse
from django.http.multipartparser import MultiPartParserError
from ninja import NinjaAPI, Query, Status
from ninja.errors import AuthenticationError, HttpError, ValidationError

from chat import selectors, services, wire
from chat.auth import api_auth
from chat.errors import DomainError, InvalidInput
from chat.models import DEFAULT_REASONING_EFFORT, Conversation
from chat.providers import get_catalog
from chat.routes.attachments import router as attachments_router
from chat.routes.conversations import router as conversations_router
from chat.routes.preferences import router as preferences_router
from chat.routes.prompts import router as prompts_router
from chat.routes.search import router as search_router
from chat.schemas import (
    ChatIn,
    ConversationOut,
    ConversationsOut,
    CwdIn,
    CwdOut,
    DeleteOut,
    EffortIn,
    EffortOut,
    Error,
    HealthOut,
    HistoryOut,
    HistoryQuery,
    ModelIn,
    ModelOut,
    ModelsOut,
    OpenOut,
    QueueCancelOut,
    QueueIn,
    QueueOut,
    StopOut,
    TabsIn,
    TabsOut,
    TitleIn,
    TitleOut,
    conversation_wire,
)
from chat.services.events import storage_failure
from chat.services.inputs import ConversationId, check, invalid_input
from metrics.api import router as metrics_router

log = logging.getLogger(__name__)

api = NinjaAPI(
    title="Dispatch",
    version="1",
    description="Chat with LLM agents: turns, history, queue and metrics (docs/protocol.md).",
    auth=api_auth,
    openapi_url="/api/openapi.json",
    docs_url="/api/docs",
    urls_namespace="api",
)

# The errors a route that names a conversation may answer, besides its own.
CONVERSATION_ERRORS = {400: Error, 401: Error, 404: Error}


# ---------------------------------------------------------------- errors


def _error(request, message: str, status: int):
    return api.create_response(request, {"error": message}, status=status)


@api.exception_handler(DomainError)
def _domain_error(request, exc: DomainError):
    return _error(request, exc.message, exc.status)


@api.exception_handler(ValidationError)
def _validation_error(request, exc: ValidationError):
    error = exc.errors[0] if exc.errors else {}
    if error.get("type") == "json_invalid" or "JSON" in error.get("msg", ""):
        return _error(request, "malformed JSON body", 400)
    return _error(request, invalid_input(exc.errors).message, 400)


@api.exception_handler(AuthenticationError)
def _auth_error(request, exc):
    return _error(
        request, "authentication required: log in or send Authorization: Bearer <token>", 401
    )


@api.exception_handler(HttpError)
def _http_error(request, exc: HttpError):
    message = str(exc)
    if message.startswith("Cannot parse request body"):
        message = "malformed JSON body"
    return _error(request, message, exc.status_code)


@api.exception_handler(RequestDataTooBig)
def _too_big(request, exc):
    return _error(request, "request body too large", 413)


@api.exception_handler(MultiPartParserError)
def _malformed_upload(request, exc):
    return _error(request, "malformed multipart body", 400)


@api.exception_handler(OperationalError)
@api.exception_handler(InternalError)
def _database_unavailable(request, exc):
    # A read the database refused (writes go through the services, which say Unavailable).
    log.warning("database unavailable in %s %s: %s", request.method, request.path, exc)
    return _error(request, storage_failure(exc).message, 503)


@api.exception_handler(Exception)
def _internal_error(request, exc):
    log.exception("unhandled error in %s %s", request.method, request.path)
    return _error(request, "internal server error", 500)


# ---------------------------------------------------------------- chat


@api.post(
    "/chat",
    response={400: Error, 401: Error, 404: Error, 409: Error, 429: Error},
    summary="Start a turn; streams its AgentEvents as NDJSON",
    openapi_extra={
        "responses": {
            "200": {
                "description": "One AgentEvent per line, from user-message to turn-sealed",
                "headers": {"X-Conversation-Id": {"schema": {"type": "string"}}},
                "content": {
                    "application/x-ndjson": {
                        "schema": {
                            "type": "object",
                            "required": ["type", "conversationId"],
                            "properties": {
                                "type": {"type": "string"},
                                "conversationId": {"type": "string"},
                                "turnId": {"type": "string"},
                            },
                        }
                    }
                },
            }
        }
    },
)
async def chat(request, payload: ChatIn):
    running = await services.turn_start(
        user=request.auth,
        conversation_id=payload.conversationId,
        message=payload.message,
        model=payload.model,
        reasoning_effort=payload.reasoningEffort,
        cwd=payload.cwd,
        attachments=payload.attachments,
        system_prompt=payload.systemPrompt,
    )
    queue = running.listen()

    async def lines():
        try:
            while True:
                event = await queue.get()
                if event is None:  # stopped while its seal waits for the database
                    return
                yield wire.dumps(event) + "\n"
                if event["type"] == "turn-sealed":
                    return
        finally:
            # The client may go away: the turn goes on, only this listener stops.
            running.listeners.discard(queue)

    response = StreamingHttpResponse(lines(), content_type="application/x-ndjson")
    response["X-Conversation-Id"] = running.conversation_id
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


@api.get("/models", response=ModelsOut)
async def models(request):
    info = await get_catalog().models()
    return {
        "models": list(info),
        "modelInfo": {
            name: {"contextWindow": i.context_window, "vision": i.vision}
            for name, i in info.items()
        },
    }


# ---------------------------------------------------------------- conversations


ARCHIVED = {"false": False, "true": True, "all": None}


@api.get("/conversations", response={200: ConversationsOut, 400: Error, 401: Error})
def conversations(request, status: str = "", q: str = "", archived: str = "false"):
    statuses = [s.strip() for s in status.split(",") if s.strip()]
    unknown = sorted(set(statuses) - set(Conversation.Status.values))
    if unknown:
        raise InvalidInput(f"unknown status: {', '.join(unknown)}", field="status")
    if archived not in ARCHIVED:
        raise InvalidInput("must be false, true or all", field="archived")
    rows = selectors.conversation_list(
        user=request.auth, statuses=statuses, q=q, archived=ARCHIVED[archived]
    )[:500]
    return {"conversations": [conversation_wire(c) for c in rows]}


@api.post(
    "/conversations",
    response={200: ConversationOut, 400: Error, 401: Error},
    summary="Import a conversation: the body is a JSON export (GET …/export?format=json)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def import_(request):
    # The raw body, read here: an export may be larger than any other request body.
    raw = request.read(settings.DISPATCH_MAX_IMPORT_BYTES + 1)
    conversation = await services.conversation_import(user=request.auth, raw=raw)
    return conversation_wire(conversation)


def _owned(request, conversation_id: str) -> Conversation | None:
    """The caller's conversation (None: not created yet); a bad id or someone else's refused."""
    check("conversationId", ConversationId, conversation_id)
    return selectors.conversation_for_user(user=request.auth, conversation_id=conversation_id)


# Window values are checked here: a number of 30 digits is a 400, not an overflow.
_WINDOW_VALUE = re.compile(r"-?\d{1,18}")


def _window_value(name: str, raw: str | None, minimum: int) -> int | None:
    if raw is None:
        return None
    if not _WINDOW_VALUE.fullmatch(raw.strip()):
        raise InvalidInput("must be an integer of at most 18 digits", field=name)
    value = int(raw)
    if value < minimum:
        raise InvalidInput(f"must be ≥ {minimum}", field=name)
    return value


@api.get("/conversations/{conversation_id}", response={200: HistoryOut, **CONVERSATION_ERRORS})
def history(request, conversation_id: str, window: Query[HistoryQuery]):
    since = _window_value("sinceSeq", window.sinceSeq, 0) or 0
    before = _window_value("beforeSeq", window.beforeSeq, 1)
    limit = _window_value("limit", window.limit, 1)
    _owned(request, conversation_id)
    chunks, latest = selectors.history_slice(
        conversation_id=conversation_id,
        window=selectors.HistoryWindow(since_seq=since, before_seq=before, limit=limit),
    )
    return {"chunks": chunks, "latestSeq": latest}


@api.delete(
    "/conversations/{conversation_id}",
    response={200: DeleteOut, **CONVERSATION_ERRORS},
    summary="Delete the conversation for good (its running turn is stopped first)",
)
async def delete(request, conversation_id: str):
    await services.conversation_delete(user=request.auth, conversation_id=conversation_id)
    return {"conversationId": conversation_id, "deleted": True}


@api.post("/conversations/{conversation_id}/stop", response={200: StopOut, **CONVERSATION_ERRORS})
async def stop(request, conversation_id: str):
    aborted = await services.turn_stop(user=request.auth, conversation_id=conversation_id)
    return {"conversationId": conversation_id, "abortedTurn": aborted}


@api.post("/conversations/{conversation_id}/close", response={200: StopOut, **CONVERSATION_ERRORS})
async def close(request, conversation_id: str):
    aborted = await services.conversation_close(user=request.auth, conversation_id=conversation_id)
    return {"conversationId": conversation_id, "abortedTurn": aborted}


@api.post(
    "/conversations/{conversation_id}/open",
    response={200: OpenOut, **CONVERSATION_ERRORS},
    summary="Open the conversation as a tab (reopening it when it was closed)",
)
async def open_(request, conversation_id: str):
    conversation = await services.conversation_open(
        user=request.auth, conversation_id=conversation_id
    )
    return {"conversationId": conversation_id, "status": conversation.status}


@api.post(
    "/conversations/{conversation_id}/queue",
    response={200: QueueOut, **CONVERSATION_ERRORS, 409: Error, 429: Error},
)
async def queue(request, conversation_id: str, payload: QueueIn):
    started, items = await services.queue_add(
        user=request.auth, conversation_id=conversation_id, text=payload.text
    )
    return {"conversationId": conversation_id, "startedTurn": started, "queue": items}


@api.delete(
    "/conversations/{conversation_id}/queue/{message_id}",
    response={200: QueueCancelOut, **CONVERSATION_ERRORS},
)
async def queue_cancel(request, conversation_id: str, message_id: str):
    cancelled, items = await services.queue_cancel(
        user=request.auth, conversation_id=conversation_id, message_id=message_id
    )
    return {"conversationId": conversation_id, "cancelled": cancelled, "queue": items}


# ---------------------------------------------------------------- sticky settings


@api.get("/conversations/{conversation_id}/title", response={200: TitleOut, **CONVERSATION_ERRORS})
def title_get(request, conversation_id: str):
    conversation = _owned(request, conversation_id)
    return {"conversationId": conversation_id, "title": conversation.title if conversation else ""}


@api.put("/conversations/{conversation_id}/title", response={200: TitleOut, **CONVERSATION_ERRORS})
async def title_put(request, conversation_id: str, payload: TitleIn):
    conversation = await services.conversation_rename(
        user=request.auth, conversation_id=conversation_id, title=payload.title
    )
    return {"conversationId": conversation_id, "title": conversation.title}


@api.get("/conversations/{conversation_id}/model", response={200: ModelOut, **CONVERSATION_ERRORS})
async def model_get(request, conversation_id: str):
    conversation = await sync_to_async(_owned)(request, conversation_id)
    model = (conversation.model if conversation else "") or get_catalog().default_model
    return {"conversationId": conversation_id, "model": model}


@api.put("/conversations/{conversation_id}/model", response={200: ModelOut, **CONVERSATION_ERRORS})
async def model_put(request, conversation_id: str, payload: ModelIn):
    conversation = await services.conversation_set_model(
        user=request.auth, conversation_id=conversation_id, model=payload.model
    )
    return {"conversationId": conversation_id, "model": conversation.model}


@api.get(
    "/conversations/{conversation_id}/reasoning-effort",
    response={200: EffortOut, **CONVERSATION_ERRORS},
)
def effort_get(request, conversation_id: str):
    conversation = _owned(request, conversation_id)
    effort = conversation.reasoning_effort if conversation else DEFAULT_REASONING_EFFORT
    return {"conversationId": conversation_id, "reasoningEffort": effort}


@api.put(
    "/conversations/{conversation_id}/reasoning-effort",
    response={200: EffortOut, **CONVERSATION_ERRORS},
)
async def effort_put(request, conversation_id: str, payload: EffortIn):
    conversation = await services.conversation_set_reasoning_effort(
        user=request.auth, conversation_id=conversation_id, reasoning_effort=payload.reasoningEffort
    )
    return {"conversationId": conversation_id, "reasoningEffort": conversation.reasoning_effort}


@api.get("/conversations/{conversation_id}/cwd", response={200: CwdOut, **CONVERSATION_ERRORS})
def cwd_get(request, conversation_id: str):
    conversation = _owned(request, conversation_id)
    return {"conversationId": conversation_id, "cwd": conversation.cwd if conversation else ""}


@api.put(
    "/conversations/{conversation_id}/cwd",
    response={200: CwdOut, **CONVERSATION_ERRORS},
    summary="Set the working directory: a path inside your workspace ('' is its root)",
)
async def cwd_put(request, conversation_id: str, payload: CwdIn):
    conversation = await services.conversation_set_cwd(
        user=request.auth, conversation_id=conversation_id, cwd=payload.cwd
    )
    return {"conversationId": conversation_id, "cwd": conversation.cwd}


# ---------------------------------------------------------------- tabs


@api.get("/tabs", response={200: TabsOut, 401: Error}, summary="Your open conversations, in order")
def tabs_get(request):
    return {"conversationIds": [t.conversation_id for t in selectors.tab_list(user=request.auth)]}


@api.put("/tabs", response={200: TabsOut, 400: Error, 401: Error}, summary="Reorder your tabs")
async def tabs_put(request, payload: TabsIn):
    order = await services.tabs_reorder(user=request.auth, conversation_ids=payload.conversationIds)
    return {"conversationIds": order}


# ---------------------------------------------------------------- health


@api.get(
    "/health",
    auth=None,
    response={200: HealthOut, 503: HealthOut},
    summary="Whether this worker serves: 503 when the database refuses writes, the channel "
    "layer fails or the worker is shutting down",
)
async def health(request):
    report = await services.health_check()
    return Status(200 if report["ok"] else 503, report)


api.add_router("", metrics_router)
api.add_router("", attachments_router)
api.add_router("", prompts_router)
api.add_router("", conversations_router)
api.add_router("", search_router)
api.add_router("", preferences_router)

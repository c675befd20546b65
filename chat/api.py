"""The JSON API of SPEC §4: thin — validate, call a service or selector, shape the answer."""

from __future__ import annotations

import json
import logging
import re

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.core.exceptions import RequestDataTooBig
from django.db import connection
from django.http import StreamingHttpResponse
from ninja import NinjaAPI, Query, Schema, Status
from ninja.errors import AuthenticationError, HttpError, ValidationError

from chat import selectors, services
from chat.auth import api_auth
from chat.models import CONVERSATION_ID_PATTERN, DEFAULT_REASONING_EFFORT, REASONING_EFFORTS
from chat.ratelimit import TurnRateLimited
from chat.schemas import ChatIn, EffortIn, Error, ModelIn, QueueIn, ReasoningEffort, TitleIn

log = logging.getLogger(__name__)

api = NinjaAPI(
    title="Dispatch",
    version="1",
    description="Chat with LLM agents: turns, history, queue and metrics (SPEC §4).",
    auth=api_auth,
    openapi_url="/api/openapi.json",
    docs_url="/api/docs",
    urls_namespace="api",
)

_ID = re.compile(CONVERSATION_ID_PATTERN)


# ---------------------------------------------------------------- errors


def _error(request, message: str, status: int):
    return api.create_response(request, {"error": message}, status=status)


@api.exception_handler(ValidationError)
def _validation_error(request, exc: ValidationError):
    return _error(request, _describe(exc.errors), 400)


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


@api.exception_handler(Exception)
def _internal_error(request, exc):
    log.exception("unhandled error in %s %s", request.method, request.path)
    return _error(request, "internal server error", 500)


@api.exception_handler(selectors.NotFound)
def _not_found(request, exc):
    return _error(request, f"conversation not found: {exc}", 404)


@api.exception_handler(services.Conflict)
def _conflict(request, exc):
    return _error(request, str(exc), 409)


@api.exception_handler(services.InvalidInput)
def _invalid(request, exc):
    return _error(request, str(exc), 400)


@api.exception_handler(TurnRateLimited)
def _rate_limited(request, exc):
    return _error(request, str(exc), 429)


@api.exception_handler(RequestDataTooBig)
def _too_big(request, exc):
    return _error(request, "request body too large", 413)


def _describe(errors: list) -> str:
    parts = []
    for err in errors:
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "payload", "query", "path")]
        where = ".".join(loc)
        msg = err.get("msg", "invalid")
        if err.get("type") == "json_invalid" or "JSON" in msg:
            return "malformed JSON body"
        parts.append(f"{where}: {msg}" if where else msg)
    return "; ".join(parts) or "invalid request"


def _conversation_id(value: str) -> str:
    if not _ID.match(value):
        raise HttpError(
            400, "invalid conversation id: use 1-128 of A-Z a-z 0-9 . _ : - (not first)"
        )
    return value


# ---------------------------------------------------------------- schemas


class ConversationOut(Schema):
    id: str
    title: str
    status: str
    model: str
    createdAt: str
    lastActivityAt: str


class ConversationsOut(Schema):
    conversations: list[ConversationOut]


class StoredChunkOut(Schema):
    seq: int
    role: str
    chunk: dict


class HistoryOut(Schema):
    chunks: list[StoredChunkOut]
    latestSeq: int


class HistoryQuery(Schema):
    sinceSeq: str | None = None
    beforeSeq: str | None = None
    limit: str | None = None


class ModelInfoOut(Schema):
    contextWindow: int | None = None


class ModelsOut(Schema):
    models: list[str]
    modelInfo: dict[str, ModelInfoOut]


class StopOut(Schema):
    conversationId: str
    abortedTurn: bool


class QueuedOut(Schema):
    id: str
    text: str
    queuedAt: str


class QueueOut(Schema):
    conversationId: str
    startedTurn: bool
    queue: list[QueuedOut]


class QueueCancelOut(Schema):
    conversationId: str
    cancelled: bool
    queue: list[QueuedOut]


class TitleOut(Schema):
    conversationId: str
    title: str


class ModelOut(Schema):
    conversationId: str
    model: str


class EffortOut(Schema):
    conversationId: str
    reasoningEffort: ReasoningEffort


class HealthOut(Schema):
    ok: bool
    database: str
    channelLayer: str


# ---------------------------------------------------------------- chat


@api.post(
    "/chat",
    response={200: None, 400: Error, 401: Error, 404: Error, 409: Error, 429: Error},
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
    turn_request = payload.turn_request()
    conversation_id = turn_request.conversation_id
    running = await services.turn_start(user=request.auth, request=turn_request)
    queue = running.listen()

    async def lines():
        try:
            while True:
                event = await queue.get()
                yield json.dumps(event, separators=(",", ":")) + "\n"
                if event["type"] == "turn-sealed":
                    return
        finally:
            # The client may go away: the turn goes on, only this listener stops.
            running.listeners.discard(queue)

    response = StreamingHttpResponse(lines(), content_type="application/x-ndjson")
    response["X-Conversation-Id"] = conversation_id
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


@api.get("/models", response=ModelsOut)
async def models(request):
    from chat.providers import get_catalog

    info = await get_catalog().models()
    return {
        "models": list(info),
        "modelInfo": {
            name: ({"contextWindow": i.context_window} if i.context_window else {})
            for name, i in info.items()
        },
    }


# ---------------------------------------------------------------- conversations


def _conversation_wire(c) -> dict:
    return {
        "id": c.id,
        "title": c.title,
        "status": c.status,
        "model": c.model,
        "createdAt": c.created_at.isoformat(),
        "lastActivityAt": c.last_activity_at.isoformat(),
    }


@api.get("/conversations", response={200: ConversationsOut, 400: Error})
def conversations(request, status: str = "", q: str = ""):
    statuses = [s.strip() for s in status.split(",") if s.strip()]
    unknown = sorted(set(statuses) - {"active", "queued", "idle", "closed"})
    if unknown:
        raise HttpError(400, f"unknown status: {', '.join(unknown)}")
    rows = selectors.conversation_list(user=request.auth, statuses=statuses, q=q)[:500]
    return {"conversations": [_conversation_wire(c) for c in rows]}


def _window_value(name: str, raw: str | None, minimum: int) -> int | None:
    if raw is None:
        return None
    if not re.fullmatch(r"-?\d+", raw.strip()):
        raise HttpError(400, f"{name} must be an integer")
    value = int(raw)
    if value < minimum:
        raise HttpError(400, f"{name} must be ≥ {minimum}")
    return value


@api.get("/conversations/{conversation_id}", response={200: HistoryOut, 400: Error, 404: Error})
def history(request, conversation_id: str, window: Query[HistoryQuery]):
    _conversation_id(conversation_id)
    since = _window_value("sinceSeq", window.sinceSeq, 0) or 0
    before = _window_value("beforeSeq", window.beforeSeq, 1)
    limit = _window_value("limit", window.limit, 1)
    selectors.conversation_for_user(user=request.auth, conversation_id=conversation_id)
    chunks, latest = selectors.history_slice(
        conversation_id=conversation_id,
        window=selectors.HistoryWindow(since_seq=since, before_seq=before, limit=limit),
    )
    return {"chunks": chunks, "latestSeq": latest}


@api.post("/conversations/{conversation_id}/stop", response={200: StopOut, 400: Error, 404: Error})
async def stop(request, conversation_id: str):
    _conversation_id(conversation_id)
    aborted = await services.turn_stop(user=request.auth, conversation_id=conversation_id)
    return {"conversationId": conversation_id, "abortedTurn": aborted}


@api.post("/conversations/{conversation_id}/close", response={200: StopOut, 400: Error, 404: Error})
async def close(request, conversation_id: str):
    _conversation_id(conversation_id)
    aborted = await services.conversation_close(user=request.auth, conversation_id=conversation_id)
    return {"conversationId": conversation_id, "abortedTurn": aborted}


@api.post(
    "/conversations/{conversation_id}/queue",
    response={200: QueueOut, 400: Error, 404: Error, 409: Error, 429: Error},
)
async def queue(request, conversation_id: str, payload: QueueIn):
    _conversation_id(conversation_id)
    started, items = await services.queue_enqueue(
        user=request.auth, conversation_id=conversation_id, text=payload.text
    )
    return {"conversationId": conversation_id, "startedTurn": started, "queue": items}


@api.delete(
    "/conversations/{conversation_id}/queue/{message_id}",
    response={200: QueueCancelOut, 400: Error, 404: Error},
)
async def queue_cancel(request, conversation_id: str, message_id: str):
    _conversation_id(conversation_id)
    cancelled, items = await services.queue_remove(
        user=request.auth, conversation_id=conversation_id, message_id=message_id
    )
    return {"conversationId": conversation_id, "cancelled": cancelled, "queue": items}


# ---------------------------------------------------------------- sticky settings


def _owned_or_none(request, conversation_id: str):
    _conversation_id(conversation_id)
    return selectors.conversation_for_user(user=request.auth, conversation_id=conversation_id)


def _ensure(request, conversation_id: str):
    _conversation_id(conversation_id)
    return services.conversation_ensure(user=request.auth, conversation_id=conversation_id)


@api.get("/conversations/{conversation_id}/title", response={200: TitleOut, 400: Error, 404: Error})
def title_get(request, conversation_id: str):
    conversation = _owned_or_none(request, conversation_id)
    return {"conversationId": conversation_id, "title": conversation.title if conversation else ""}


@api.put("/conversations/{conversation_id}/title", response={200: TitleOut, 400: Error, 404: Error})
def title_put(request, conversation_id: str, payload: TitleIn):
    conversation = _ensure(request, conversation_id)
    services.conversation_update(conversation=conversation, title=payload.title.strip())
    return {"conversationId": conversation_id, "title": conversation.title}


@api.get("/conversations/{conversation_id}/model", response={200: ModelOut, 400: Error, 404: Error})
async def model_get(request, conversation_id: str):
    from chat.providers import get_catalog

    conversation = await sync_to_async(_owned_or_none)(request, conversation_id)
    model = (conversation.model if conversation else "") or get_catalog().default_model
    return {"conversationId": conversation_id, "model": model}


@api.put("/conversations/{conversation_id}/model", response={200: ModelOut, 400: Error, 404: Error})
async def model_put(request, conversation_id: str, payload: ModelIn):
    from chat.providers import UnknownModel, get_catalog

    try:
        resolved = await get_catalog().resolve(payload.model)
    except UnknownModel as exc:
        raise HttpError(400, str(exc)) from exc
    conversation = await database_sync_to_async(_ensure)(request, conversation_id)
    await database_sync_to_async(services.conversation_update)(
        conversation=conversation, model=resolved.name
    )
    return {"conversationId": conversation_id, "model": resolved.name}


@api.get(
    "/conversations/{conversation_id}/reasoning-effort",
    response={200: EffortOut, 400: Error, 404: Error},
)
def effort_get(request, conversation_id: str):
    conversation = _owned_or_none(request, conversation_id)
    effort = conversation.reasoning_effort if conversation else DEFAULT_REASONING_EFFORT
    return {"conversationId": conversation_id, "reasoningEffort": effort}


@api.put(
    "/conversations/{conversation_id}/reasoning-effort",
    response={200: EffortOut, 400: Error, 404: Error},
)
def effort_put(request, conversation_id: str, payload: EffortIn):
    assert payload.reasoningEffort in REASONING_EFFORTS
    conversation = _ensure(request, conversation_id)
    services.conversation_update(
        conversation=conversation, reasoning_effort=payload.reasoningEffort
    )
    return {"conversationId": conversation_id, "reasoningEffort": payload.reasoningEffort}


# ---------------------------------------------------------------- health


@api.get("/health", auth=None, response={200: HealthOut, 503: HealthOut})
async def health(request):
    checks = {"database": "ok", "channelLayer": "ok"}
    try:
        await database_sync_to_async(_ping_database)()
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
    try:
        layer = get_channel_layer()
        channel = await layer.new_channel("health.")
        await layer.send(channel, {"type": "ping"})
        await layer.receive(channel)
    except Exception as exc:
        checks["channelLayer"] = f"error: {type(exc).__name__}"
    ok = all(v == "ok" for v in checks.values())
    return Status(200 if ok else 503, {"ok": ok, **checks})


def _ping_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


from metrics.api import router as metrics_router  # noqa: E402  (mounted after our routes)

api.add_router("", metrics_router)

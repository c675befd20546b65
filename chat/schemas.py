"""The JSON API's request and response shapes (OpenAPI), built from the services' input types.

Request bodies use chat.services.inputs' types, so the API and every other transport accept
and refuse the same values with the same messages.
"""

from __future__ import annotations

from ninja import Schema
from pydantic import ConfigDict

from chat.services.inputs import (
    AttachmentIds,
    CompactThreshold,
    ConversationId,
    Cwd,
    MessageText,
    ModelName,
    PromptTemplate,
    PromptText,
    ReasoningEffort,
    Seq,
    Theme,
    Title,
)


class Error(Schema):
    error: str


class _In(Schema):
    # Strict: "message": 5 is refused, not read as "5". Unknown fields are ignored.
    model_config = ConfigDict(strict=True, extra="ignore")


class ChatIn(_In):
    # Empty only with attachments: the service checks it (MessageText without them).
    message: PromptText
    conversationId: ConversationId | None = None
    model: ModelName | None = None
    reasoningEffort: ReasoningEffort | None = None
    cwd: Cwd | None = None
    attachments: AttachmentIds | None = None
    systemPrompt: PromptTemplate | None = None


class QueueIn(_In):
    text: MessageText


class TitleIn(_In):
    title: Title


class ModelIn(_In):
    model: ModelName


class EffortIn(_In):
    reasoningEffort: ReasoningEffort


class CwdIn(_In):
    cwd: Cwd


class TabsIn(_In):
    conversationIds: list[ConversationId]


class CompactionIn(_In):
    threshold: CompactThreshold


class SystemPromptIn(_In):
    template: PromptTemplate | None  # None: the deployment's template


class PresetIn(_In):
    template: PromptTemplate


class ForkIn(_In):
    beforeSeq: Seq | None = None


# ---------------------------------------------------------------------- responses


class ForkedFromOut(Schema):
    conversationId: str
    seq: int | None


class ConversationOut(Schema):
    id: str
    title: str
    status: str
    model: str
    createdAt: str
    lastActivityAt: str
    archived: bool
    forkedFrom: ForkedFromOut | None


def conversation_wire(c) -> dict:
    """A conversation as ``ConversationOut``."""
    forked = None
    if c.forked_from_id:
        forked = {"conversationId": c.forked_from_id, "seq": c.forked_at_seq}
    return {
        "id": c.id,
        "title": c.title,
        "status": c.status,
        "model": c.model,
        "createdAt": c.created_at.isoformat(),
        "lastActivityAt": c.last_activity_at.isoformat(),
        "archived": c.archived_at is not None,
        "forkedFrom": forked,
    }


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
    vision: bool = False  # whether the model takes images


class ModelsOut(Schema):
    models: list[str]
    modelInfo: dict[str, ModelInfoOut]


class StopOut(Schema):
    conversationId: str
    abortedTurn: bool


class OpenOut(Schema):
    conversationId: str
    status: str


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


class CwdOut(Schema):
    conversationId: str
    cwd: str


class TabsOut(Schema):
    conversationIds: list[str]


class HealthOut(Schema):
    ok: bool
    database: str
    channelLayer: str
    draining: bool
    runningTurns: int


class SystemPromptOut(Schema):
    conversationId: str
    template: str  # the template the conversation uses
    custom: bool  # whether it is the conversation's own (else the deployment's)
    prompt: str | None  # what it resolved to; None before the first turn


class PresetOut(Schema):
    name: str
    template: str


class PresetsOut(Schema):
    default: str  # the deployment's template
    presets: list[PresetOut]


class PresetDeleteOut(Schema):
    name: str
    deleted: bool


class ForksOut(Schema):
    conversationId: str
    forkedFrom: ForkedFromOut | None
    forks: list[ConversationOut]


class ArchiveOut(Schema):
    conversationId: str
    archived: bool


class DeleteOut(Schema):
    conversationId: str
    deleted: bool


class SearchHitOut(Schema):
    conversationId: str
    title: str
    seq: int | None  # None: the title matched
    role: str
    snippet: str  # HTML: the text escaped, the matching words in <mark>
    archived: bool


class SearchOut(Schema):
    q: str
    results: list[SearchHitOut]


class PreferencesIn(_In):
    theme: Theme


class PreferencesOut(Schema):
    theme: Theme


class AttachmentOut(Schema):
    id: str
    kind: str  # "image" | "file"
    name: str
    mediaType: str
    size: int
    width: int | None = None
    height: int | None = None
    sha256: str
    createdAt: str
    conversationId: str | None
    sentAt: str | None


class AttachmentDeletedOut(Schema):
    id: str
    deleted: bool


class CompactionOut(Schema):
    conversationId: str
    threshold: int


class CompactOut(Schema):
    conversationId: str
    turnId: str
    seq: int
    upToSeq: int
    replacedMessages: int
    keptMessages: int
    summary: str
    contextSize: int | None = None
    usage: dict | None = None  # Usage: {inputTokens, outputTokens, cacheReadTokens?, …}

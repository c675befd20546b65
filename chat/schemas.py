"""Client input, validated the same way for HTTP (chat.api) and WebSocket (chat.consumers)."""

import uuid
from typing import Annotated, Literal

from django.conf import settings
from ninja import Schema
from pydantic import ConfigDict, Field, StrictStr

from chat.models import CONVERSATION_ID_PATTERN
from chat.services import TurnRequest

ReasoningEffort = Literal["low", "medium", "high", "xhigh", "max"]


class Error(Schema):
    error: str


class _In(Schema):
    model_config = ConfigDict(strict=True, extra="ignore")


# A chat message or queued text; longer input is a 400 (settings.DISPATCH_MAX_MESSAGE_CHARS).
MessageText = Annotated[
    StrictStr, Field(min_length=1, max_length=settings.DISPATCH_MAX_MESSAGE_CHARS)
]


class ChatIn(_In):
    message: MessageText
    conversationId: Annotated[str, Field(pattern=CONVERSATION_ID_PATTERN)] | None = None
    model: StrictStr | None = None
    reasoningEffort: ReasoningEffort | None = None
    cwd: StrictStr | None = None

    def turn_request(self) -> TurnRequest:
        """The service's request; a conversation id is minted when the client sent none."""
        return TurnRequest(
            message=self.message,
            conversation_id=self.conversationId or str(uuid.uuid4()),
            model=self.model,
            reasoning_effort=self.reasoningEffort,
            cwd=self.cwd,
        )


class QueueIn(_In):
    text: MessageText


class TitleIn(_In):
    title: StrictStr = Field(min_length=1, max_length=200)


class ModelIn(_In):
    model: StrictStr = Field(min_length=1)


class EffortIn(_In):
    reasoningEffort: ReasoningEffort


class ConversationRef(_In):
    conversationId: Annotated[str, Field(pattern=CONVERSATION_ID_PATTERN)]


class QueueFrame(ConversationRef, QueueIn):
    pass


class QueueCancelFrame(ConversationRef):
    messageId: StrictStr


class SurfaceFrame(_In):
    surfaceId: StrictStr
    conversationId: Annotated[str, Field(pattern=CONVERSATION_ID_PATTERN)] | None = None


class InvokeFrame(SurfaceFrame):
    actionId: StrictStr
    payload: dict | None = None

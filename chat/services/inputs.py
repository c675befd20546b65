"""What the services accept: one type per kind of input, and the one way a bad value is told.

Every service checks the values it is given with ``check`` (a transport may pass them on
raw: a socket frame's fields, a form's). The JSON API's request schemas are built from the
same types, so a wrong value gets the same message whichever transport brought it:
``<field>: <problem>`` (``InvalidInput``).
"""

from __future__ import annotations

from functools import cache
from typing import Annotated, Any, Literal

from django.conf import settings
from pydantic import AfterValidator, Field, StrictInt, StrictStr, TypeAdapter, ValidationError
from pydantic_core import PydanticCustomError

from chat.errors import InvalidInput
from chat.models import CONVERSATION_ID_PATTERN, REASONING_EFFORTS
from chat.prompts import TEMPLATE_MAX_CHARS

CONVERSATION_ID_RULE = "must be 1 to 128 of A-Z a-z 0-9 . _ : - (the first a letter or digit)"
TITLE_MAX = 200
MODEL_NAME_MAX = 300
CWD_MAX = 1000
PRESET_NAME_MAX = 100


def _no_nul(value: str) -> str:
    if "\0" in value:
        raise PydanticCustomError("nul", "must not contain NUL characters")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("blank", "must not be empty")
    return value


def _title(value: str) -> str:
    """Whitespace folded to single spaces; 1 to TITLE_MAX characters after that."""
    value = " ".join(_no_nul(value).split())
    if not value:
        raise PydanticCustomError("blank", "must not be empty")
    if len(value) > TITLE_MAX:
        raise PydanticCustomError("too_long", f"must be at most {TITLE_MAX} characters")
    return value


def _preset_name(value: str) -> str:
    """Whitespace folded; 1 to PRESET_NAME_MAX characters."""
    value = " ".join(_no_nul(value).split())
    if not value:
        raise PydanticCustomError("blank", "must not be empty")
    if len(value) > PRESET_NAME_MAX:
        raise PydanticCustomError("too_long", f"must be at most {PRESET_NAME_MAX} characters")
    return value


ConversationId = Annotated[
    StrictStr,
    Field(
        pattern=CONVERSATION_ID_PATTERN,
        description="1-128 of A-Z a-z 0-9 . _ : - (not first); clients may mint it",
    ),
]
# A chat message or a queued text.
MessageText = Annotated[
    StrictStr,
    Field(min_length=1, max_length=settings.DISPATCH_MAX_MESSAGE_CHARS),
    AfterValidator(_no_nul),
    AfterValidator(_not_blank),
]
# The message of a turn that carries attachments: it may be empty (an image alone).
PromptText = Annotated[
    StrictStr, Field(max_length=settings.DISPATCH_MAX_MESSAGE_CHARS), AfterValidator(_no_nul)
]
Title = Annotated[StrictStr, AfterValidator(_title)]
ModelName = Annotated[StrictStr, Field(min_length=1, max_length=MODEL_NAME_MAX)]
ReasoningEffort = Literal["low", "medium", "high", "xhigh", "max"]
assert set(ReasoningEffort.__args__) == set(REASONING_EFFORTS)  # type: ignore[attr-defined]
Cwd = Annotated[StrictStr, Field(max_length=CWD_MAX), AfterValidator(_no_nul)]


def _message_id(value: str) -> str:
    if not (value.isascii() and value.isdecimal() and len(value) <= 18):
        raise PydanticCustomError("message_id", "must be the number of a queued message")
    return value


# A queued message's id: up to 18 ASCII digits ("²" is a digit to str.isdigit, not here).
MessageId = Annotated[StrictStr, AfterValidator(_message_id)]
AttachmentId = Annotated[
    StrictStr,
    Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="an id from POST /attachments"),
]
# The count limit (DISPATCH_ATTACHMENTS_PER_MESSAGE) is checked by the service, which says it.
AttachmentIds = Annotated[list[AttachmentId], Field(max_length=1000)]
# A system prompt template (chat.prompts checks its syntax).
PromptTemplate = Annotated[StrictStr, Field(max_length=TEMPLATE_MAX_CHARS), AfterValidator(_no_nul)]
PresetName = Annotated[StrictStr, AfterValidator(_preset_name)]
# A history position: a seq (≥ 1).
Seq = Annotated[int, Field(ge=1, le=2**62)]
Theme = Literal["system", "light", "dark"]
TurnId = Annotated[StrictStr, Field(min_length=1, max_length=64)]
# The share of the model's window (%) at which a conversation is compacted; 0: never.
CompactThreshold = Annotated[
    StrictInt, Field(ge=0, le=100, description="percent of the context window; 0 turns it off")
]


@cache
def _adapter(annotation: Any) -> TypeAdapter:
    return TypeAdapter(annotation)


def check(field: str, annotation: Any, value: Any) -> Any:
    """``value`` validated as ``annotation``; InvalidInput naming ``field`` otherwise.

    None is a missing value (a transport passes absent fields on as None).
    """
    if value is None:
        raise InvalidInput("Field required", field=field)
    try:
        return _adapter(annotation).validate_python(value, strict=True)
    except ValidationError as exc:
        raise invalid_input(exc.errors(), field) from None


def invalid_input(errors: list, field: str | None = None) -> InvalidInput:
    """The first of pydantic's errors as InvalidInput (``<field>: <problem>``)."""
    error = errors[0] if errors else {}
    loc = tuple(error.get("loc", ()))
    if loc[:1] == ("file",):  # django-ninja's place for uploaded files, then the field's name
        loc = loc[1:]
    where = [str(part) for part in loc if part not in _TRANSPORT_LOCS]
    name = ".".join([field, *where] if field else where) or None
    if error.get("type") == "string_pattern_mismatch" and str(name).startswith("conversationId"):
        return InvalidInput(CONVERSATION_ID_RULE, field=name)
    return InvalidInput(error.get("msg", "invalid value"), field=name)


# Where django-ninja puts a request's parts; the field names are what a client knows.
_TRANSPORT_LOCS = {"body", "payload", "query", "path"}

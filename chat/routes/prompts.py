"""The system prompt's routes: a conversation's prompt, and the user's named presets."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from ninja import Router

from chat import selectors, services
from chat.config import get_config
from chat.schemas import (
    Error,
    PresetDeleteOut,
    PresetIn,
    PresetOut,
    PresetsOut,
    SystemPromptIn,
    SystemPromptOut,
)
from chat.services.inputs import ConversationId, check
from chat.services.prompts import effective_template

router = Router(tags=["system prompt"])
ERRORS = {400: Error, 401: Error, 404: Error}


def _wire(conversation_id: str, conversation) -> dict:
    template, custom = effective_template(conversation)
    resolved = conversation is not None and bool(conversation.system_prompt_resolved_for)
    return {
        "conversationId": conversation_id,
        "template": template,
        "custom": custom,
        "prompt": conversation.system_prompt if resolved else None,
    }


@router.get(
    "/conversations/{conversation_id}/system-prompt",
    response={200: SystemPromptOut, **ERRORS},
    summary="The conversation's system prompt: its template and what it resolved to",
)
def system_prompt_get(request, conversation_id: str):
    check("conversationId", ConversationId, conversation_id)
    conversation = selectors.conversation_for_user(
        user=request.auth, conversation_id=conversation_id
    )
    return _wire(conversation_id, conversation)


@router.put(
    "/conversations/{conversation_id}/system-prompt",
    response={200: SystemPromptOut, **ERRORS},
    summary="Set the conversation's template (null: the deployment's); resolved at once",
)
async def system_prompt_put(request, conversation_id: str, payload: SystemPromptIn):
    conversation = await services.conversation_set_system_prompt(
        user=request.auth, conversation_id=conversation_id, template=payload.template
    )
    return _wire(conversation_id, conversation)


@router.get(
    "/system-prompt-presets",
    response={200: PresetsOut, 401: Error},
    summary="Your system prompt presets, and the deployment's template",
)
async def presets_get(request):
    presets = await sync_to_async(selectors.preset_list)(user=request.auth)
    return {"default": get_config().system_prompt_template, "presets": presets}


@router.put(
    "/system-prompt-presets/{name}",
    response={200: PresetOut, 400: Error, 401: Error},
    summary="Create or replace your preset of that name",
)
async def preset_put(request, name: str, payload: PresetIn):
    return await services.preset_save(user=request.auth, name=name, template=payload.template)


@router.delete(
    "/system-prompt-presets/{name}",
    response={200: PresetDeleteOut, 400: Error, 401: Error},
    summary="Delete your preset of that name",
)
async def preset_delete(request, name: str):
    deleted = await services.preset_delete(user=request.auth, name=name)
    return {"name": " ".join(name.split()), "deleted": deleted}

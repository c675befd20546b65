"""The system prompt: a conversation's template, resolved once, and the user's named presets.

A conversation's prompt comes from its owner's template, or the deployment's
(``[system_prompt]`` in the config) when the owner set none. It is resolved (chat.prompts)
at the conversation's first turn and stored on the conversation; it is resolved again only
when the conversation's model or cwd changes, or its template is set. Every request of the
conversation therefore starts with the same bytes, which keeps providers' prompt caches warm.

Setting a template checks it completely first (``InvalidInput`` naming the line and the
problem), so a bad template never reaches a turn.
"""

from __future__ import annotations

import os
from functools import lru_cache

from asgiref.sync import sync_to_async

from chat import rawsql, selectors
from chat.config import get_config
from chat.errors import InvalidInput, NotFound
from chat.models import Conversation, SystemPromptPreset
from chat.prompts import Context, Template, TemplateError, parse
from chat.services import _log
from chat.services.events import conversation_group, publish_on_commit, user_group, write
from chat.services.inputs import ConversationId, PresetName, PromptTemplate, check
from chat.services.workspace import conversation_dir_ready, user_root
from chat.tools.sandbox import SandboxError, resolve, sandbox_root

MAX_PRESETS = 50
READ_LIMIT = 1 << 20  # bytes read of a {{file:…}} (the prompt keeps at most FILE_MAX_CHARS)


def check_template(field: str, value) -> str:
    """A template from a client: a string that parses; InvalidInput naming the problem."""
    source = check(field, PromptTemplate, value)
    try:
        parse(source)
    except TemplateError as exc:
        raise InvalidInput(str(exc), field=field) from None
    return source


@lru_cache(maxsize=256)
def _parsed(source: str) -> Template:
    return parse(source)


def effective_template(conversation: Conversation | None) -> tuple[str, bool]:
    """(the template the conversation uses, whether it is its owner's own)."""
    if conversation is not None and conversation.system_prompt_template is not None:
        return conversation.system_prompt_template, True
    return get_config().system_prompt_template, False


def resolved_key(conversation: Conversation) -> str:
    """What a resolved prompt depends on besides its template: the model and the cwd."""
    return f"{conversation.model}\n{conversation.cwd}"


def resolve_now(conversation: Conversation) -> str:
    """Resolve the conversation's template against its current model, cwd and owner (runs
    git and reads files: call it from a thread, outside any transaction)."""
    source, _ = effective_template(conversation)
    if not source.strip():
        return ""
    cwd = conversation_dir_ready(owner_id=conversation.owner_id, cwd=conversation.cwd)
    root = sandbox_root(cwd)

    def read_file(path: str) -> str | None:
        try:
            real = resolve(root, path)
            with open(real, "rb") as handle:
                return handle.read(READ_LIMIT).decode("utf-8", errors="replace")
        except (SandboxError, OSError):
            return None  # missing, unreadable, or a symlink leading outside

    context = Context(
        cwd=cwd,
        model=conversation.model,
        conversation_id=conversation.id,
        user=conversation.owner.get_username(),
        read_file=read_file,
        workspace=os.fspath(user_root(conversation.owner_id)),
    )
    return _parsed(source).render(context)


async def system_prompt_for_turn(*, conversation: Conversation) -> str:
    """The prompt of the conversation's next turn: the stored one, resolved (and stored) first
    when it never was or the conversation's model or cwd changed since."""
    key = resolved_key(conversation)
    if conversation.system_prompt_resolved_for == key:
        return conversation.system_prompt
    prompt = await sync_to_async(resolve_now)(conversation)
    await write(_store, conversation_id=conversation.id, prompt=prompt, key=key)
    return prompt


def prompt_settle(conversation: Conversation) -> None:
    """In a turn's opening transaction: store the prompt now when its template is empty
    (nothing to resolve: no git, no files), so ``system_prompt_for_turn`` needs no round trip.
    """
    key = resolved_key(conversation)
    if (
        conversation.system_prompt_resolved_for == key
        or effective_template(conversation)[0].strip()
    ):
        return
    _store(conversation_id=conversation.id, prompt="", key=key)
    conversation.system_prompt, conversation.system_prompt_resolved_for = "", key


def _store(*, conversation_id: str, prompt: str, key: str, **fields) -> None:
    # A plain statement (chat.rawsql): every turn of a new conversation stores its prompt.
    rawsql.update(
        Conversation, conversation_id, system_prompt=prompt, system_prompt_resolved_for=key,
        **fields,
    )  # fmt: skip


async def conversation_set_system_prompt(
    *, user, conversation_id: str, template: str | None
) -> Conversation:
    """Set the conversation's template (None: use the deployment's) and resolve it now, so
    the owner sees what the next turn sends. Creates the conversation for the caller when it
    does not exist yet (clients mint ids). InvalidInput for a template that does not parse."""
    check("conversationId", ConversationId, conversation_id)
    if template is not None:
        template = check_template("template", template)
    conversation = await write(_ensure, user=user, conversation_id=conversation_id)
    conversation.system_prompt_template = template
    prompt = await sync_to_async(resolve_now)(conversation)
    return await write(
        _do_set, user=user, conversation_id=conversation_id, template=template, prompt=prompt
    )


def _ensure(*, user, conversation_id: str) -> Conversation:
    conversation = _log.conversation_ensure(user=user, conversation_id=conversation_id)
    return Conversation.objects.select_related("owner").get(pk=conversation.pk)


def _do_set(*, user, conversation_id: str, template: str | None, prompt: str) -> Conversation:
    conversation = selectors.conversation_for_user(user=user, conversation_id=conversation_id)
    if conversation is None:
        raise NotFound.conversation(conversation_id)
    _store(
        conversation_id=conversation_id,
        prompt=prompt,
        key=resolved_key(conversation),
        system_prompt_template=template,
    )
    conversation.refresh_from_db()
    publish_on_commit(
        conversation_group(conversation_id),
        {"type": "chat.prompt", "conversation": conversation_id},
    )
    return conversation


# ---------------------------------------------------------------------- presets


async def preset_save(*, user, name: str, template: str) -> dict:
    """Create or replace the user's preset ``name``; at most MAX_PRESETS per user."""
    name = check("name", PresetName, name)
    template = check_template("template", template)
    return await write(_do_save, user=user, name=name, template=template)


def _do_save(*, user, name: str, template: str) -> dict:
    presets = SystemPromptPreset.objects.select_for_update().filter(owner=user)
    preset = presets.filter(name=name).first()
    if preset is None:
        if presets.count() >= MAX_PRESETS:
            raise InvalidInput(f"at most {MAX_PRESETS} presets; delete one first")
        preset = SystemPromptPreset(owner=user, name=name)
    preset.template = template
    preset.save()
    publish_on_commit(user_group(user.pk), {"type": "user.presets"})
    return preset.to_wire()


async def preset_delete(*, user, name: str) -> bool:
    """Delete the user's preset ``name``; whether there was one."""
    name = check("name", PresetName, name)
    return await write(_do_delete, user=user, name=name)


def _do_delete(*, user, name: str) -> bool:
    deleted, _ = SystemPromptPreset.objects.filter(owner=user, name=name).delete()
    if deleted:
        publish_on_commit(user_group(user.pk), {"type": "user.presets"})
    return bool(deleted)

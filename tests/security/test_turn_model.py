"""A turn started without a model runs on its conversation's own, which the opening
transaction reads with the owner (no read before it): one whose model has left the config
is refused, as before, with nothing stored and the conversation free for the next start."""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from chat import services
from chat.errors import InvalidInput
from chat.models import Conversation, Turn
from chat.running import running_turns
from chat.services import _log
from tests.security.conftest import COMPLETIONS, MODEL, script_answers

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_start_without_a_model_where_the_conversations_model_is_gone(scripted, user):
    await database_sync_to_async(_log.conversation_ensure)(
        user=user, conversation_id="retired-1", model="scripted/retired-model"
    )
    with pytest.raises(InvalidInput, match="retired-model"):
        await services.turn_start(user=user, conversation_id="retired-1", message="hello")
    assert "retired-1" not in running_turns.turns
    conversation = await Conversation.objects.aget(pk="retired-1")
    assert (conversation.model, conversation.last_seq) == ("scripted/retired-model", 0)
    assert not await Turn.objects.filter(conversation_id="retired-1").aexists()
    assert [r for r in scripted.requests if r.path == COMPLETIONS] == []

    # Named, a model of the config runs there (and becomes the conversation's).
    script_answers(scripted, "answered")
    running = await services.turn_start(
        user=user, conversation_id="retired-1", message="hello", model=MODEL
    )
    events = running.listen()
    while (event := await events.get()) is not None and event["type"] != "turn-sealed":
        pass
    turn = await Turn.objects.aget(conversation_id="retired-1")
    assert turn.finish_reason == "stop"
    assert (await Conversation.objects.aget(pk="retired-1")).model == MODEL

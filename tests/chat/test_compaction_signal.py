"""``chat.signals.compaction_finished``: the one place a compaction is reported (for metrics),
once per compaction, automatic or manual, ok or failed."""

from __future__ import annotations

import pytest
from asgiref.sync import ThreadSensitiveContext
from channels.db import database_sync_to_async

from chat import services
from chat.config import reset_config
from chat.providers import reset_catalog
from chat.runtime import Message
from chat.services import _log
from chat.signals import compaction_finished
from tests.chat.providers.sse_server import ScriptedServer, openai_text_reply

pytestmark = pytest.mark.django_db(transaction=True)
COMPLETIONS = "/v1/chat/completions"


@pytest.fixture
def scripted(tmp_path, settings, monkeypatch):
    with ScriptedServer() as server:
        config = tmp_path / "dispatch.toml"
        config.write_text(
            f'[runtime]\nretry_delays = []\n[tools]\nworkspace_root = "{tmp_path}"\n'
            f'[[credentials]]\nname = "s"\nkind = "openai"\nbase_url = "{server.url}/v1"\n'
            'api_key_env = "SCRIPTED_API_KEY"\nmodels = ["m"]\ncontext_window = 4000\n'
        )
        monkeypatch.setenv("SCRIPTED_API_KEY", "k")
        settings.DISPATCH_CONFIG = str(config)
        settings.DISPATCH_TURN_RATE_LIMIT = 0
        reset_config()
        reset_catalog()
        yield server
    reset_config()
    reset_catalog()


@pytest.fixture
def reports():
    seen = []

    def receive(sender, signal, **fields):
        seen.append(fields)

    compaction_finished.connect(receive)
    yield seen
    compaction_finished.disconnect(receive)


@database_sync_to_async
def long_conversation(user, conversation_id: str, turns: int) -> None:
    _log.conversation_ensure(user=user, conversation_id=conversation_id, model="s/m")
    for n in range(turns):
        _log.chunks_append(
            conversation_id=conversation_id,
            messages=[
                Message("user", [{"type": "text", "text": f"question {n}"}]),
                Message("assistant", [{"type": "text", "text": f"answer {n}"}]),
            ],
        )


async def compact(user, conversation_id: str):
    async with ThreadSensitiveContext():
        running = await services.conversation_compact(user=user, conversation_id=conversation_id)
        try:
            return await services.compaction_result(running)
        except Exception as exc:
            return exc


async def test_each_compaction_is_reported_once_with_its_model_trigger_and_outcome(
    scripted, reports, user
):
    await long_conversation(user, "sig-1", 6)
    scripted.script(COMPLETIONS, openai_text_reply("the gist"), openai_text_reply("  "))

    assert (await compact(user, "sig-1"))["summary"] == "the gist"
    await long_conversation(user, "sig-1", 1)
    failed = await compact(user, "sig-1")

    assert str(failed) == "compaction failed: the model returned an empty summary"
    assert reports == [
        {"model": "s/m", "trigger": "manual", "ok": True, "code": None,
         "usage": {"inputTokens": 10, "outputTokens": 5}},
        {"model": "s/m", "trigger": "manual", "ok": False, "code": "empty-summary",
         "usage": {"inputTokens": 10, "outputTokens": 5}},
    ]  # fmt: skip


async def test_a_receiver_that_fails_does_not_fail_the_compaction(scripted, user):
    def broken(sender, **fields):
        raise RuntimeError("exporter down")

    compaction_finished.connect(broken)
    try:
        await long_conversation(user, "sig-2", 6)
        scripted.script(COMPLETIONS, openai_text_reply("fine"))
        assert (await compact(user, "sig-2"))["summary"] == "fine"
    finally:
        compaction_finished.disconnect(broken)

"""Managing conversations over the JSON API: system prompt, forks, archive and delete, export
and import, search (docs/protocol.md#11-managing-conversations). A real database, turns on a
scripted OpenAI-format server."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path

import pytest
from asgiref.sync import ThreadSensitiveContext
from channels.db import database_sync_to_async

from chat.config import reset_config
from chat.models import Chunk, Conversation, SearchEntry, Turn
from chat.running import running_turns
from metrics.models import TurnMetrics as TurnMetricsRow
from tests.chat.providers.sse_server import Reply, openai_text_reply, openai_tool_reply
from tests.security.conftest import COMPLETIONS, MODEL, api_client, ndjson_events, run_turn

pytestmark = pytest.mark.django_db(transaction=True)


async def call(token, method, path, body=None, raw: bytes | None = None):
    client = api_client(token)
    send = getattr(client, method)
    if raw is not None:
        return await send(path, raw, content_type="application/json")
    if body is None:
        return await send(path)
    return await send(path, json.dumps(body), content_type="application/json")


def system_messages(scripted) -> list[str]:
    """The system message of every request the model got (None when there was none)."""
    out = []
    for request in scripted.requests:
        messages = request.body["messages"]
        out.append(messages[0]["content"] if messages[0]["role"] == "system" else None)
    return out


async def two_turns(scripted, token, conversation_id="conv-a"):
    await run_turn(scripted, token, conversation_id, "first question", "first answer")
    await run_turn(scripted, token, conversation_id, "second question", "second answer")


# ---------------------------------------------------------------- system prompt


@pytest.fixture
def deployment_prompt(scripted, settings):
    """The scripted config plus a deployment template."""
    config = settings.DISPATCH_CONFIG
    with open(config, "a") as handle:
        handle.write(
            '\n[system_prompt]\ntemplate = """Agent for {{user}} using {{model}} in {{cwd}}.\n'
            '[if file:NOTES.md]Notes: {{file:NOTES.md}}[else]No notes.[endif]"""\n'
        )
    reset_config()
    yield
    reset_config()


async def test_the_deployment_prompt_is_resolved_once_and_sent_as_the_same_bytes(
    scripted, token, deployment_prompt, user
):
    read = await call(token, "get", "/conversations/sp-1/system-prompt")
    assert read.status_code == 200
    assert read.json()["custom"] is False and read.json()["prompt"] is None
    assert "{{model}}" in read.json()["template"]

    await two_turns(scripted, token, "sp-1")
    first, second = system_messages(scripted)
    assert first == second  # the same bytes: provider prompt caches keep working
    assert first.startswith(f"Agent for alice using {MODEL} in /") and "No notes." in first
    stored = (await call(token, "get", "/conversations/sp-1/system-prompt")).json()
    assert stored["prompt"] == first

    # A file the template reads appears only when the prompt is resolved again: on a change
    # of cwd (or model), not on the next turn.
    conversation = await database_sync_to_async(Conversation.objects.get)(pk="sp-1")
    root = conversation.system_prompt.split(" in ")[1].split(".\n")[0]
    Path(root, "NOTES.md").write_text("use tabs")  # noqa: ASYNC240 - a test's own file
    await run_turn(scripted, token, "sp-1", "third", "third answer")
    assert system_messages(scripted)[-1] == first
    assert (await call(token, "put", "/conversations/sp-1/cwd", {"cwd": "sub"})).status_code == 200
    await run_turn(scripted, token, "sp-1", "fourth", "fourth answer")
    assert system_messages(scripted)[-1].endswith("No notes.")  # sub/ has no NOTES.md
    assert "/sub." in system_messages(scripted)[-1]


async def test_a_user_template_is_checked_on_save_and_resolved_at_once(scripted, token):
    bad = await call(token, "put", "/conversations/sp-2/system-prompt", {"template": "Hi {{nope}}"})
    assert bad.status_code == 400
    assert bad.json()["error"].startswith("template: line 1: undefined variable 'nope'")
    unclosed = await call(
        token, "put", "/conversations/sp-2/system-prompt", {"template": "a\n[if cwd]b"}
    )
    assert unclosed.json() == {"error": "template: line 2: [if] is never closed with [endif]"}
    outside = await call(
        token, "put", "/conversations/sp-2/system-prompt", {"template": "{{file:../x}}"}
    )
    assert outside.status_code == 400 and "stay inside the working directory" in outside.text
    assert not await database_sync_to_async(Conversation.objects.filter(pk="sp-2").exists)()

    good = await call(
        token, "put", "/conversations/sp-2/system-prompt",
        {"template": "Be brief. [if git_branch]On {{git_branch}}.[else]No git.[endif] Id {{conversation_id}}"},
    )  # fmt: skip
    assert good.status_code == 200, good.content
    assert good.json()["custom"] is True
    assert good.json()["prompt"] == "Be brief. No git. Id sp-2"
    await run_turn(scripted, token, "sp-2", "hi", "hello")
    assert system_messages(scripted) == ["Be brief. No git. Id sp-2"]

    back = await call(token, "put", "/conversations/sp-2/system-prompt", {"template": None})
    assert back.json()["custom"] is False and back.json()["prompt"] == ""
    await run_turn(scripted, token, "sp-2", "again", "hello")
    assert system_messages(scripted)[-1] is None  # no deployment template: no system message


async def test_a_chat_can_start_with_a_preset(scripted, token):
    saved = await call(
        token, "put", "/system-prompt-presets/Terse", {"template": "Answer in one line."}
    )
    assert saved.json() == {"name": "Terse", "template": "Answer in one line."}
    bad = await call(token, "put", "/system-prompt-presets/Bad", {"template": "{{x}}"})
    assert bad.status_code == 400
    listing = await call(token, "get", "/system-prompt-presets")
    assert listing.json() == {
        "default": "",
        "presets": [{"name": "Terse", "template": "Answer in one line."}],
    }
    scripted.script(COMPLETIONS, openai_text_reply("ok"))
    response = await call(
        token, "post", "/chat",
        {"conversationId": "sp-3", "message": "hi", "systemPrompt": "Answer in one line."},
    )  # fmt: skip
    await ndjson_events(response)
    assert system_messages(scripted) == ["Answer in one line."]
    refused = await call(
        token,
        "post",
        "/chat",
        {"conversationId": "sp-4", "message": "hi", "systemPrompt": "[if cwd]"},
    )
    assert refused.status_code == 400 and refused.json()["error"].startswith("systemPrompt:")
    deleted = await call(token, "delete", "/system-prompt-presets/Terse")
    assert deleted.json() == {"name": "Terse", "deleted": True}
    again = await call(token, "delete", "/system-prompt-presets/Terse")
    assert again.json() == {"name": "Terse", "deleted": False}


# ---------------------------------------------------------------- forks


async def history(token, conversation_id):
    response = await call(token, "get", f"/conversations/{conversation_id}")
    return response.json()["chunks"]


async def test_fork_copies_the_chunks_before_a_user_message(scripted, token):
    await two_turns(scripted, token)
    source = await history(token, "conv-a")
    assert [c["seq"] for c in source] == [1, 2, 3, 4]
    fork = await call(token, "post", "/conversations/conv-a/fork", {"beforeSeq": 3})
    assert fork.status_code == 200, fork.content
    fork_id = fork.json()["id"]
    assert fork_id != "conv-a"
    assert fork.json()["forkedFrom"] == {"conversationId": "conv-a", "seq": 3}
    assert await history(token, fork_id) == source[:2]
    metrics = (await call(token, "get", f"/conversations/{fork_id}/metrics")).json()["turns"]
    assert len(metrics) == 1 and metrics[0]["usage"]["outputTokens"] == 5
    listed = (await call(token, "get", "/conversations/conv-a/forks")).json()
    assert [f["id"] for f in listed["forks"]] == [fork_id]
    assert (await call(token, "get", f"/conversations/{fork_id}/forks")).json()["forkedFrom"] == {
        "conversationId": "conv-a",
        "seq": 3,
    }
    # The fork continues on its own: new seqs after the copy, the source unchanged.
    await run_turn(scripted, token, fork_id, "edited question", "edited answer")
    assert [c["seq"] for c in await history(token, fork_id)] == [1, 2, 3, 4]
    assert await history(token, "conv-a") == source
    # Copies are left out of the throughput aggregates: 2 turns of the source + 1 of the fork.
    throughput = (await call(token, "get", "/metrics/throughput")).json()
    assert throughput["models"][0]["turns"] == 3


async def test_fork_refuses_a_cut_inside_a_message_or_past_the_end(scripted, token):
    await two_turns(scripted, token)
    for before, message in [
        (2, "beforeSeq: must be the seq of a user message, or the conversation's latest seq + 1"),
        (6, "beforeSeq: must be at most 5 (the latest seq + 1)"),
        (0, "beforeSeq: Input should be greater than or equal to 1"),
    ]:
        response = await call(token, "post", "/conversations/conv-a/fork", {"beforeSeq": before})
        assert response.status_code == 400
        assert response.json() == {"error": message}
    whole = await call(token, "post", "/conversations/conv-a/fork", {})
    assert len(await history(token, whole.json()["id"])) == 4
    missing = await call(token, "post", "/conversations/nothing-here/fork", {})
    assert missing.status_code == 404


async def test_a_fork_while_a_turn_runs_copies_only_committed_chunks(scripted, token):
    await run_turn(scripted, token, "conv-r", "first", "first answer")
    gate = threading.Event()
    scripted.script(
        COMPLETIONS,
        openai_tool_reply([("call_1", "list_files", {})]),
        Reply(events=[gate, *openai_text_reply("late answer").events]),
    )
    response = await call(
        token, "post", "/chat", {"conversationId": "conv-r", "message": "look", "model": MODEL}
    )
    drive = running_turns.turns["conv-r"].task

    async def step_committed():
        while True:  # the log over HTTP until the step is in it: user, tool call, result
            if len(await history(token, "conv-r")) >= 5:
                return
            await asyncio.sleep(0.02)

    await asyncio.wait_for(step_committed(), 10)
    fork = await call(token, "post", "/conversations/conv-r/fork", {})
    copied = await history(token, fork.json()["id"])
    assert [c["chunk"]["type"] for c in copied] == [
        "text", "text", "text", "tool-call", "tool-result",
    ]  # fmt: skip
    gate.set()
    await ndjson_events(response)
    await drive
    assert len(await history(token, "conv-r")) == 6
    assert len(await history(token, fork.json()["id"])) == 5  # the fork did not grow


# ---------------------------------------------------------------- archive and delete


async def test_archive_hides_from_the_list_and_restore_brings_back(scripted, token):
    await run_turn(scripted, token, "conv-x", "keep this", "kept")
    assert (await call(token, "post", "/conversations/conv-x/open")).status_code == 200
    archived = await call(token, "post", "/conversations/conv-x/archive")
    assert archived.json() == {"conversationId": "conv-x", "archived": True}
    listing = (await call(token, "get", "/conversations")).json()["conversations"]
    assert listing == []
    only = (await call(token, "get", "/conversations?archived=true")).json()["conversations"]
    assert [c["id"] for c in only] == ["conv-x"] and only[0]["archived"] is True
    assert (await call(token, "get", "/tabs")).json() == {"conversationIds": []}
    assert len(await history(token, "conv-x")) == 2  # still readable by id
    restored = await call(token, "post", "/conversations/conv-x/restore")
    assert restored.json() == {"conversationId": "conv-x", "archived": False}
    listing = (await call(token, "get", "/conversations")).json()["conversations"]
    assert [c["id"] for c in listing] == ["conv-x"]
    bad = await call(token, "get", "/conversations?archived=maybe")
    assert bad.json() == {"error": "archived: must be false, true or all"}


async def test_delete_removes_everything_and_the_id_answers_404_for_good(scripted, token):
    await two_turns(scripted, token, "conv-d")
    await call(token, "post", "/conversations/conv-d/open")
    before = (await call(token, "get", "/metrics/throughput")).json()["models"][0]["turns"]
    assert before == 2
    deleted = await call(token, "delete", "/conversations/conv-d")
    assert deleted.json() == {"conversationId": "conv-d", "deleted": True}

    @database_sync_to_async
    def leftovers():
        return {
            "chunks": Chunk.objects.filter(conversation_id="conv-d").count(),
            "turns": Turn.objects.filter(conversation_id="conv-d").count(),
            "metrics": TurnMetricsRow.objects.filter(conversation_id="conv-d").count(),
            "search": SearchEntry.objects.filter(conversation_id="conv-d").count(),
            "title": Conversation.objects.get(pk="conv-d").title,
        }

    assert await leftovers() == {"chunks": 0, "turns": 0, "metrics": 0, "search": 0, "title": ""}
    assert (await call(token, "get", "/metrics/throughput")).json()["models"] == []
    for method, path, body in [
        ("get", "/conversations/conv-d", None),
        ("get", "/conversations/conv-d/title", None),
        ("put", "/conversations/conv-d/title", {"title": "back"}),
        ("get", "/conversations/conv-d/metrics", None),
        ("get", "/conversations/conv-d/export?format=json", None),
        ("post", "/conversations/conv-d/fork", {}),
        ("post", "/conversations/conv-d/open", None),
        ("delete", "/conversations/conv-d", None),
        ("post", "/chat", {"conversationId": "conv-d", "message": "hi"}),
    ]:
        response = await call(token, method, path, body)
        assert response.status_code == 404, (path, response.content)
    assert (await call(token, "get", "/conversations?archived=all")).json()["conversations"] == []
    assert (await call(token, "get", "/search?q=question")).json()["results"] == []


async def test_delete_stops_the_running_turn_first(scripted, token):
    gate = threading.Event()
    scripted.script(COMPLETIONS, Reply(events=[gate, *openai_text_reply("never").events]))
    response = await call(
        token, "post", "/chat", {"conversationId": "conv-s", "message": "go", "model": MODEL}
    )
    drive = running_turns.turns["conv-s"].task
    # As Django's ASGI handler does for every request (its test client does not): the
    # request's sync work runs in a thread of its own, not in the one the turn writes from.
    async with ThreadSensitiveContext():
        deleted = await call(token, "delete", "/conversations/conv-s")
    assert deleted.status_code == 200
    assert drive.done()  # the turn was stopped and sealed before the purge
    gate.set()
    events = await ndjson_events(response)
    assert [e["type"] for e in events][-2:] == ["done", "turn-sealed"]
    assert events[-2]["reason"] == "aborted"
    assert await database_sync_to_async(Chunk.objects.filter(conversation_id="conv-s").count)() == 0


# ---------------------------------------------------------------- export and import


def without_ids(document: dict) -> dict:
    """The document with ids and times left out (what differs between two copies)."""
    document = json.loads(json.dumps(document))
    document.pop("exportedAt")
    info = document["conversation"]
    for key in ("id", "createdAt", "lastActivityAt", "forkedFrom"):
        info.pop(key)
    for turn in document["turns"]:
        for key in ("turnId", "startedAt", "endedAt"):
            turn.pop(key)
        if turn["metrics"]:
            turn["metrics"].pop("turnId")
    for chunk in document["chunks"]:
        chunk.pop("turnId")
    return document


async def test_export_import_export_is_the_same_apart_from_ids_and_times(scripted, token):
    scripted.script(
        COMPLETIONS,
        openai_tool_reply([("call_1", "list_files", {})]),
        openai_text_reply("Here is **the** list."),
    )
    response = await call(
        token, "post", "/chat", {"conversationId": "conv-e", "message": "list", "model": MODEL}
    )
    await ndjson_events(response)
    await run_turn(scripted, token, "conv-e", "thanks", "you're welcome")
    exported = await call(token, "get", "/conversations/conv-e/export?format=json")
    assert exported.status_code == 200
    assert exported["Content-Disposition"] == 'attachment; filename="dispatch-conv-e.json"'
    document = exported.json()
    assert document["format"] == "dispatch.conversation" and document["version"] == 1
    assert [c["seq"] for c in document["chunks"]] == list(range(1, 7))
    assert len(document["turns"]) == 2 and document["turns"][0]["metrics"]["steps"]

    imported = await call(token, "post", "/conversations", raw=exported.content)
    assert imported.status_code == 200, imported.content
    new_id = imported.json()["id"]
    assert new_id != "conv-e"
    assert await history(token, new_id) == await history(token, "conv-e")
    again = (await call(token, "get", f"/conversations/{new_id}/export?format=json")).json()
    assert without_ids(again) == without_ids(document)
    metrics = (await call(token, "get", f"/conversations/{new_id}/metrics")).json()["turns"]
    assert [m["usage"] for m in metrics] == [t["metrics"]["usage"] for t in document["turns"]]

    markdown = await call(token, "get", "/conversations/conv-e/export?format=md")
    text = markdown.content.decode()
    assert markdown["Content-Type"].startswith("text/markdown")
    assert text.startswith("# list\n")
    assert "## Turn 1" in text and "## Turn 2" in text
    assert "<details><summary>Tool call: list_files ✓</summary>" in text
    assert "Here is **the** list." in text and "*turn 2 · 15 tok (10 in / 5 out)" in text
    bad = await call(token, "get", "/conversations/conv-e/export?format=pdf")
    assert bad.json() == {"error": "format: must be md or json"}


def document(**changes) -> dict:
    base = {
        "format": "dispatch.conversation",
        "version": 1,
        "conversation": {"title": "t"},
        "turns": [{"turnId": "T", "status": "sealed", "finishReason": "stop", "metrics": None}],
        "chunks": [
            {"seq": 1, "message": 1, "role": "user", "turnId": "T",
             "chunk": {"type": "text", "text": "hi"}},
            {"seq": 2, "message": 2, "role": "assistant", "turnId": "T",
             "chunk": {"type": "text", "text": "hello"}},
        ],
    }  # fmt: skip
    for key, value in changes.items():
        base[key] = value
    return base


def with_chunk(index: int, **fields) -> list[dict]:
    chunks = document()["chunks"]
    chunks[index] = {**chunks[index], **fields}
    return chunks


HOSTILE = [
    (b"not json", "the file is not JSON (export a conversation as JSON first)"),
    (b"[1, 2]", "the file is not a Dispatch conversation export (expected an object)"),
    (
        json.dumps({"format": "other"}).encode(),
        "format: expected 'dispatch.conversation' (a Dispatch conversation export)",
    ),
    (
        json.dumps(document(version=2)).encode(),
        "version: unsupported version 2 (this server reads 1)",
    ),
    (
        json.dumps(document(chunks=with_chunk(1, seq=3))).encode(),
        "chunks[1].seq: expected 2 (seqs are 1, 2, 3 … with no gap)",
    ),
    (
        json.dumps(document(chunks=with_chunk(1, chunk={"type": "virus", "x": 1}))).encode(),
        "chunks[1].chunk.type: unknown chunk type 'virus' (known: text, thinking, tool-call, "
        "tool-result, error, system, image, file)",
    ),
    (
        json.dumps(document(chunks=with_chunk(1, chunk={"type": "text", "text": 5}))).encode(),
        "chunks[1].chunk.text: a text chunk needs a str",
    ),
    (
        json.dumps(document(chunks=with_chunk(1, turnId="other"))).encode(),
        "chunks[1].turnId: names no turn of the document",
    ),
    (
        json.dumps(document(conversation={"cwd": "../../etc"})).encode(),
        "cwd: must be a directory inside your workspace",
    ),
    (
        json.dumps(document(conversation={"systemPrompt": {"template": "{{boom}}"}})).encode(),
        None,
    ),
    (b"[" * 100_000 + b"]" * 100_000, "the file is nested too deeply"),
]


@pytest.mark.parametrize(("raw", "message"), HOSTILE, ids=range(len(HOSTILE)))
async def test_hostile_imports_are_refused_and_nothing_is_stored(raw, message, token, user):
    response = await call(token, "post", "/conversations", raw=raw)
    assert response.status_code == 400, response.content
    if message is not None:
        assert response.json() == {"error": message}
    assert "Traceback" not in response.text
    count = database_sync_to_async(Conversation.objects.filter(owner=user).count)
    assert await count() == 0


async def test_an_import_naming_someone_elses_conversation_is_refused(
    scripted, token, other_token, user
):
    await run_turn(scripted, other_token, "bob-source", "bob's", "secret")
    raw = json.dumps(document(conversation={"forkedFrom": {"conversationId": "bob-source"}}))
    response = await call(token, "post", "/conversations", raw=raw.encode())
    assert response.json() == {
        "error": "conversation.forkedFrom: conversation bob-source is not yours"
    }
    assert await database_sync_to_async(Conversation.objects.filter(owner=user).count)() == 0


async def test_an_import_over_the_size_limit_is_refused(token, settings):
    settings.DISPATCH_MAX_IMPORT_BYTES = 1000
    response = await call(token, "post", "/conversations", raw=b" " * 1001)
    assert response.json() == {"error": "the file is too large: at most 1,000 bytes"}


async def test_unknown_but_valid_chunk_types_are_carried_unchanged(token, monkeypatch):
    from chat import exports

    monkeypatch.setattr(exports, "CHUNK_TYPES", (*exports.CHUNK_TYPES, "video"))
    video = {"type": "video", "attachmentId": "a1", "mediaType": "video/mp4", "extra": [1]}
    raw = json.dumps(document(chunks=with_chunk(1, chunk=video))).encode()
    response = await call(token, "post", "/conversations", raw=raw)
    assert response.status_code == 200, response.content
    assert (await history(token, response.json()["id"]))[1]["chunk"] == video


async def test_an_imported_image_chunk_is_kept_as_it_describes_itself(token):
    image = {"type": "image", "attachmentId": "a1", "mediaType": "image/png", "extra": [1]}
    raw = json.dumps(document(chunks=with_chunk(1, chunk=image))).encode()
    response = await call(token, "post", "/conversations", raw=raw)
    assert response.status_code == 200, response.content
    assert (await history(token, response.json()["id"]))[1]["chunk"] == image


# ---------------------------------------------------------------- search


async def test_search_ranks_highlights_and_follows_commits(scripted, token, other_token):
    await run_turn(scripted, token, "conv-1", "How do lighthouses work?", "A lamp and a lens.")
    await run_turn(
        scripted, token, "conv-2", "Tell me about lighthouse keepers",
        "Lighthouse keepers tended the <lighthouse> lamp.",
    )  # fmt: skip
    await run_turn(scripted, other_token, "bob-1", "lighthouse secrets of bob", "bob answer")
    found = (await call(token, "get", "/search?q=lighthouse")).json()["results"]
    assert {hit["conversationId"] for hit in found} == {"conv-1", "conv-2"}
    assert all("bob" not in json.dumps(hit) for hit in found)
    best = found[0]
    assert best["conversationId"] == "conv-2" and best["seq"] == 2
    assert "<mark>Lighthouse</mark>" in best["snippet"]
    assert "&lt;<mark>lighthouse</mark>&gt;" in best["snippet"]  # the text is escaped
    # A prefix of the last word matches while typing; every word must match.
    assert [h["seq"] for h in (await call(token, "get", "/search?q=lam")).json()["results"]]
    both = (await call(token, "get", "/search?q=keepers lamp")).json()["results"]
    assert [(h["conversationId"], h["seq"]) for h in both] == [("conv-2", 2)]
    # Titles are searchable too (seq null), and renamed titles are re-indexed.
    await call(token, "put", "/conversations/conv-1/title", {"title": "Optics notes"})
    titles = (await call(token, "get", "/search?q=optics")).json()["results"]
    assert titles == [
        {"conversationId": "conv-1", "title": "Optics notes", "seq": None, "role": "title",
         "snippet": "<mark>Optics</mark> notes", "archived": False},
    ]  # fmt: skip
    for q in ("", "   ", '"', "*", "AND OR NOT", "a:b", "(("):
        response = await call(token, "get", f"/search?q={q}")
        assert response.status_code == 200, (q, response.content)
    assert (await call(token, "get", "/search?q=x&limit=0")).status_code == 400

"""Full-text search on both databases: SQLite (FTS5) and a real PostgreSQL (tsvector + GIN).

The same scenario runs in a ``manage.py shell`` on each migrated database: text committed
through the log writer is found at once, ranked, highlighted, and never another user's.
"""

from __future__ import annotations

import json

import pytest

from tests.servers import manage

SCENARIO = r"""
import json
from django.contrib.auth.models import User
from chat import selectors
from chat.runtime import Message
from chat.services import _log

alice = User.objects.create_user("alice-" + TAG)
bob = User.objects.create_user("bob-" + TAG)
def say(user, conversation_id, title, *texts):
    _log.conversation_ensure(user=user, conversation_id=conversation_id, title=title)
    for i, text in enumerate(texts):
        role = "user" if i % 2 == 0 else "assistant"
        _log.chunks_append(
            conversation_id=conversation_id,
            messages=[Message(role, [{"type": "text", "text": text}])],
        )
say(alice, "a1-" + TAG, "Seafaring", "How do sails work?", "Sails are wings: lift pulls the boat.")
say(alice, "a2-" + TAG, "Keepers",
    "Tell me about old coastal towers and the people who lived there, like a lighthouse keeper",
    "Lighthouse keepers kept the lighthouse lamp <lit>.")
say(bob, "b1-" + TAG, "Bob", "lighthouse secrets of bob", "bob's lighthouse answer")
# A tool result and thinking are not indexed.
_log.chunks_append(conversation_id="a1-" + TAG, messages=[
    Message("assistant", [{"type": "thinking", "text": "lighthouse thinking"}]),
    Message("tool", [{"type": "tool-result", "toolCallId": "c", "toolName": "t",
                      "content": "lighthouse tool output", "isError": False}]),
])
def hits(user, q):
    return [h.to_wire() for h in selectors.search_hits(user=user, q=q)]
print(json.dumps({
    "alice": hits(alice, "lighthouse"),
    "bob": hits(bob, "lighthouse"),
    "prefix": hits(alice, "sai"),
    "stem": hits(alice, "pulling"),
    "both": hits(alice, "keepers lamp"),
    "title": hits(alice, "seafaring"),
    "odd": [hits(alice, q) for q in ['"', "*", "AND", "(( a", "NEAR/2", "-x", "a:b"]],
}))
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def database_env(request, tmp_path) -> dict[str, str]:
    if request.param == "postgresql":
        url = request.getfixturevalue("migrated_postgres_url")
        return {"DATABASE_URL": url}
    env = {"DISPATCH_SQLITE_PATH": str(tmp_path / "search.sqlite3")}
    manage(["migrate", "--noinput"], **env)
    return env


def test_search_on_each_database(database_env, request):
    tag = request.node.callspec.id
    code = f"TAG = {tag!r}\n" + SCENARIO
    out = json.loads(manage(["shell", "-c", code], **database_env).strip().splitlines()[-1])

    alice = out["alice"]
    assert {h["conversationId"] for h in alice} == {f"a2-{tag}"}
    assert [h["seq"] for h in alice] == [2, 1]  # the short answer says it twice: first
    assert alice[0]["title"] == "Keepers" and alice[0]["role"] == "assistant"
    assert "<mark>lighthouse</mark>" in alice[0]["snippet"]
    assert "<lit>" not in alice[0]["snippet"]  # escaped (SQLite) or dropped (PostgreSQL)
    assert all("bob" not in json.dumps(h) for h in alice)
    assert {h["conversationId"] for h in out["bob"]} == {f"b1-{tag}"}
    assert {h["seq"] for h in out["prefix"]} == {1, 2}  # "sai…" while typing
    assert [h["seq"] for h in out["stem"]] == [2]  # "pulling" finds "pulls"
    assert [(h["conversationId"], h["seq"]) for h in out["both"]] == [(f"a2-{tag}", 2)]
    assert out["title"] == [
        {
            "conversationId": f"a1-{tag}",
            "title": "Seafaring",
            "seq": None,
            "role": "title",
            "snippet": "<mark>Seafaring</mark>",
            "archived": False,
        }
    ]
    assert all(isinstance(result, list) for result in out["odd"])

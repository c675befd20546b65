"""Full-text search over a user's conversations: titles and message text, ranked, with
highlighted snippets, on the database's own full-text engine.

What is indexed (``SearchEntry`` rows, written in the transaction that commits the text, so a
step is searchable as soon as it is in the log): the text chunks of user and assistant
messages, and each conversation's title (``seq`` 0). Thinking, tool calls and tool results
are not. A text is indexed up to ``MAX_INDEXED_CHARS``.

- **SQLite**: an FTS5 table over ``chat_searchentry`` (external content, kept in step by
  triggers), Porter stemming over the ``unicode61`` tokenizer, ranked by BM25. The owner is a
  column of the FTS table, so a query only walks the caller's entries.
- **PostgreSQL**: a stored ``tsvector`` column (``english`` configuration) with a GIN index,
  ranked by ``ts_rank``; snippets by ``ts_headline`` on the top hits only.

Ranking covers the newest ``MAX_RANKED`` matches of a query (all of them, unless a word is in
a large share of the user's messages): the cost of a search stays bounded whatever the size
of the history (bench/RESULTS.md, full-text search).

A query is the words of what the user typed (letters and digits; everything else separates
them), all of which must match, the last one as a prefix (so results come while typing).
The SQL never contains the user's text: it is passed as a parameter, built from words only.
"""

from __future__ import annotations

import functools
import html
import re
from dataclasses import dataclass

from django.db import connection

from chat import rawsql

MAX_INDEXED_CHARS = 200_000
MAX_QUERY_WORDS = 16
# A query matching more entries than this ranks the newest this many of them: ranking every
# match of a word found in half of a million messages cannot answer in 100 ms, and a word
# that common finds the recent messages first, as a user expects.
MAX_RANKED = 10_000
# Snippet highlight markers: private-use characters, replaced by <mark> after escaping.
_OPEN, _CLOSE = "\ue000", "\ue001"
_WORD = re.compile(r"\w+", re.UNICODE)

# ---------------------------------------------------------------- the schema (migration)

SQLITE_SCHEMA = [
    "CREATE VIRTUAL TABLE chat_searchentry_fts USING fts5("
    "text, owner_id, content='chat_searchentry', content_rowid='id', "
    "tokenize='porter unicode61 remove_diacritics 2')",
    # Only the text counts for the rank; the owner column only selects the caller's rows.
    "INSERT INTO chat_searchentry_fts(chat_searchentry_fts, rank) VALUES ('rank', 'bm25(1.0, 0.0)')",
    "CREATE TRIGGER chat_searchentry_ai AFTER INSERT ON chat_searchentry BEGIN "
    "INSERT INTO chat_searchentry_fts(rowid, text, owner_id) "
    "VALUES (new.id, new.text, new.owner_id); END",
    "CREATE TRIGGER chat_searchentry_ad AFTER DELETE ON chat_searchentry BEGIN "
    "INSERT INTO chat_searchentry_fts(chat_searchentry_fts, rowid, text, owner_id) "
    "VALUES ('delete', old.id, old.text, old.owner_id); END",
    "CREATE TRIGGER chat_searchentry_au AFTER UPDATE ON chat_searchentry BEGIN "
    "INSERT INTO chat_searchentry_fts(chat_searchentry_fts, rowid, text, owner_id) "
    "VALUES ('delete', old.id, old.text, old.owner_id); "
    "INSERT INTO chat_searchentry_fts(rowid, text, owner_id) "
    "VALUES (new.id, new.text, new.owner_id); END",
]
SQLITE_SCHEMA_DROP = [
    "DROP TRIGGER IF EXISTS chat_searchentry_au",
    "DROP TRIGGER IF EXISTS chat_searchentry_ad",
    "DROP TRIGGER IF EXISTS chat_searchentry_ai",
    "DROP TABLE IF EXISTS chat_searchentry_fts",
]
POSTGRES_SCHEMA = [
    "ALTER TABLE chat_searchentry ADD COLUMN document tsvector "
    "GENERATED ALWAYS AS (to_tsvector('english'::regconfig, text)) STORED",
    "CREATE INDEX chat_searchentry_document ON chat_searchentry USING GIN (document)",
    # The newest entries of an owner first: how a query with very many matches is walked.
    "CREATE INDEX chat_searchentry_owner_newest ON chat_searchentry (owner_id, id DESC)",
]
POSTGRES_SCHEMA_DROP = [
    "DROP INDEX IF EXISTS chat_searchentry_owner_newest",
    "DROP INDEX IF EXISTS chat_searchentry_document",
    "ALTER TABLE chat_searchentry DROP COLUMN IF EXISTS document",
]


def schema_forward(apps, schema_editor) -> None:
    vendor = schema_editor.connection.vendor
    for statement in {"sqlite": SQLITE_SCHEMA, "postgresql": POSTGRES_SCHEMA}.get(vendor, []):
        schema_editor.execute(statement)


def schema_backward(apps, schema_editor) -> None:
    vendor = schema_editor.connection.vendor
    statements = {"sqlite": SQLITE_SCHEMA_DROP, "postgresql": POSTGRES_SCHEMA_DROP}
    for statement in statements.get(vendor, []):
        schema_editor.execute(statement)


# ---------------------------------------------------------------- writing the index


def indexed_text(chunk: dict, role: str) -> str | None:
    """The text of a chunk that is searchable, None for the rest."""
    if role in ("user", "assistant") and chunk.get("type") == "text":
        text = chunk.get("text")
        if isinstance(text, str) and text.strip():
            return text[:MAX_INDEXED_CHARS]
    return None


def title_index(*, conversation_id: str, owner_id: int, title: str, new: bool = False) -> None:
    """Index the conversation's title (replacing the previous one; ``new``: a conversation
    created in this transaction has none)."""
    from chat.models import SearchEntry

    if not new:
        SearchEntry.objects.filter(conversation_id=conversation_id, seq=0).delete()
    if title.strip():
        insert = entry_insert()
        insert.one(
            insert.values(
                conversation_id=conversation_id, owner_id=owner_id, seq=0, role="title", text=title
            )
        )


@functools.cache
def entry_insert() -> rawsql.Insert:
    """The insert of search entries: a plain statement (chat.rawsql), as every turn's
    messages and every new conversation's title are indexed."""
    from chat.models import SearchEntry

    return rawsql.Insert(SearchEntry)


# ---------------------------------------------------------------- querying


@dataclass(frozen=True)
class Hit:
    conversation_id: str
    title: str
    seq: int | None  # None: the title matched
    role: str
    snippet: str  # HTML: the text escaped, the matching words in <mark>
    archived: bool

    def to_wire(self) -> dict:
        return {
            "conversationId": self.conversation_id,
            "title": self.title,
            "seq": self.seq,
            "role": self.role,
            "snippet": self.snippet,
            "archived": self.archived,
        }


def query_words(q: str) -> list[str]:
    """The words searched for: letters and digits, lower-cased, at most MAX_QUERY_WORDS."""
    return [w.lower() for w in _WORD.findall(q)][:MAX_QUERY_WORDS]


def search(*, owner_id: int, q: str, limit: int) -> list[Hit]:
    """The owner's best ``limit`` entries matching every word of ``q``, best first."""
    words = query_words(q)
    if not words:
        return []
    if connection.vendor == "postgresql":
        rows = _postgres(owner_id, words, limit)
    else:
        rows = _sqlite(owner_id, words, limit)
    return [
        Hit(
            conversation_id=conversation_id,
            title=title,
            seq=seq or None,
            role=role,
            snippet=_snippet_html(snippet),
            archived=archived,
        )
        for conversation_id, title, seq, role, snippet, archived in rows
    ]


def _sqlite(owner_id: int, words: list[str], limit: int) -> list[tuple]:
    # FTS5 query: each word a quoted string (quotes doubled), the last one a prefix.
    terms = ['"' + w.replace('"', '""') + '"' for w in words]
    terms[-1] += "*"
    match = f'owner_id : "{int(owner_id)}" AND text : (' + " AND ".join(terms) + ")"
    # The newest MAX_RANKED matches (FTS5 walks the index newest first and stops), the best
    # of them by BM25, by the FTS table alone; then snippets and titles for those only.
    sql = f"""
        WITH candidates AS (
            SELECT rowid AS id, rank FROM chat_searchentry_fts
            WHERE chat_searchentry_fts MATCH %s ORDER BY rowid DESC LIMIT {MAX_RANKED}
        ),
        top AS (SELECT id, rank FROM candidates ORDER BY rank, id DESC LIMIT %s)
        SELECT e.conversation_id, c.title, e.seq, e.role,
               snippet(chat_searchentry_fts, 0, '{_OPEN}', '{_CLOSE}', '…', 24),
               c.archived_at IS NOT NULL
        FROM top
        JOIN chat_searchentry_fts ON chat_searchentry_fts.rowid = top.id
        JOIN chat_searchentry e ON e.id = top.id
        JOIN chat_conversation c ON c.id = e.conversation_id
        WHERE chat_searchentry_fts MATCH %s AND c.deleted_at IS NULL
        ORDER BY top.rank, top.id DESC
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [match, limit, match])
        return [(*row[:5], bool(row[5])) for row in cursor.fetchall()]


def _postgres(owner_id: int, words: list[str], limit: int) -> list[tuple]:
    # to_tsquery: words joined by &, the last one a prefix; words are \w+ only, so nothing in
    # them is tsquery syntax.
    tsquery = " & ".join(words[:-1] + [words[-1] + ":*"])
    options = f"StartSel={_OPEN}, StopSel={_CLOSE}, MaxWords=30, MinWords=12, MaxFragments=2"
    sql = f"""
        WITH q AS (SELECT to_tsquery('english'::regconfig, %s) AS query),
        candidates AS (
            SELECT e.id, e.document FROM chat_searchentry e, q
            WHERE e.owner_id = %s AND e.document @@ q.query
            ORDER BY e.id DESC LIMIT {MAX_RANKED}
        ),
        top AS (
            SELECT c.id, ts_rank(c.document, q.query) AS rank
            FROM candidates c, q
            ORDER BY rank DESC, c.id DESC
            LIMIT %s
        )
        SELECT e.conversation_id, c.title, e.seq, e.role,
               ts_headline('english'::regconfig, e.text, q.query, %s),
               c.archived_at IS NOT NULL
        FROM top
        JOIN chat_searchentry e ON e.id = top.id
        JOIN chat_conversation c ON c.id = e.conversation_id
        CROSS JOIN q
        WHERE c.deleted_at IS NULL
        ORDER BY top.rank DESC, e.id DESC
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [tsquery, owner_id, limit, options])
        return cursor.fetchall()


def _snippet_html(snippet: str) -> str:
    """Escape the snippet, then turn the markers into <mark> elements (balanced)."""
    out, open_ = [], False
    for part in re.split(f"([{_OPEN}{_CLOSE}])", " ".join(snippet.split())):
        if part == _OPEN and not open_:
            out.append("<mark>")
            open_ = True
        elif part == _CLOSE and open_:
            out.append("</mark>")
            open_ = False
        elif part not in (_OPEN, _CLOSE):
            out.append(html.escape(part, quote=False))
    if open_:
        out.append("</mark>")
    return "".join(out)

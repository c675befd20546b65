"""Full-text search over 1M indexed chunks, on SQLite (FTS5) and PostgreSQL (tsvector + GIN).

``python -m bench.search [--entries N]`` fills a fresh database of each kind with N indexed
message texts of one user (the worst case for the owner filter: every entry is the caller's),
spread over 1,000 conversations, plus 1% of another user's; then times ``selectors
.search_hits`` — the whole query the API and the web app run, with ranking, snippets and the
conversation join — for a rare, a medium and a common word, two words, and a prefix, after
one warm-up each. It rewrites the "Full-text search" section of bench/RESULTS.md.

Texts: 24 words each, drawn from a 30,000-word vocabulary of made-up words with a Zipf
distribution (s = 1.1), like natural language; so a word's number of matches is known from
its rank. The inserts go through plain SQL into ``chat_searchentry`` (the triggers or the
generated column index them as the log writer's inserts do).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS = REPO_ROOT / "bench" / "RESULTS.md"
VOCABULARY = 30_000
WORDS_PER_TEXT = 24
CONVERSATIONS = 1_000
REPEAT = 15
TARGET_MS = 100.0
SECTION = "## Full-text search"


def vocabulary(seed: int = 7) -> list[str]:
    """Made-up words of 2–4 syllables, unique, in rank order."""
    rng = random.Random(seed)
    syllables = [c + v for c in "bcdfghjklmnprstvz" for v in "aeiou"]
    words: list[str] = []
    seen: set[str] = set()
    while len(words) < VOCABULARY:
        word = "".join(rng.choice(syllables) for _ in range(rng.randint(2, 4)))
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def fill(entries: int) -> dict:
    """Insert the entries (inside Django, in the configured database); seconds taken."""
    from django.contrib.auth.models import User
    from django.db import connection, transaction

    from chat.models import Conversation
    from chat.search import title_index

    words = vocabulary()
    weights = [1 / (rank**1.1) for rank in range(1, VOCABULARY + 1)]
    rng = random.Random(11)
    owner = User.objects.create_user("bench-search")
    other = User.objects.create_user("bench-search-other")
    started = time.perf_counter()
    Conversation.objects.bulk_create(
        [Conversation(id=f"s{index}", owner=owner) for index in range(CONVERSATIONS)]
        + [Conversation(id="other", owner=other)]
    )
    title_index(conversation_id="s0", owner_id=owner.pk, title="Benchmark conversation")
    sql = (
        "INSERT INTO chat_searchentry (conversation_id, owner_id, seq, role, text) "
        "VALUES (%s, %s, %s, %s, %s)"
    )
    batch = 10_000
    others = entries // 100
    with connection.cursor() as cursor:
        for low in range(0, entries + others, batch):
            rows = []
            for n in range(low, min(low + batch, entries + others)):
                mine = n < entries
                text = " ".join(rng.choices(words, weights, k=WORDS_PER_TEXT))
                rows.append((
                    f"s{n % CONVERSATIONS}" if mine else "other",
                    owner.pk if mine else other.pk,
                    n // CONVERSATIONS + 1,
                    "user" if n % 2 else "assistant",
                    text.capitalize() + ".",
                ))  # fmt: skip
            with transaction.atomic():
                cursor.executemany(sql, rows)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE chat_searchentry")
    elif connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO chat_searchentry_fts(chat_searchentry_fts) VALUES ('optimize')"
            )
    return {"insertSeconds": round(time.perf_counter() - started, 1), "owner": owner.pk}


def queries() -> dict[str, str]:
    """Query kind → query: words of known rank (a rank-r word is in ~24·N/(r^1.1·H) texts)."""
    words = vocabulary()
    return {
        "rare word (rank 20,000)": words[19_999],
        "medium word (rank 300)": words[299],
        "common word (rank 5)": words[4],
        "two words (ranks 50 and 400)": f"{words[49]} {words[399]}",
        "prefix of a word (rank 1,000), as typed": words[999][:-1],
    }


def measure() -> dict:
    """Time ``search_hits`` for each query kind (median of REPEAT after a warm-up)."""
    from django.contrib.auth.models import User
    from django.db import connection

    from chat.selectors import search_hits

    owner = User.objects.get(username="bench-search")
    out = {}
    for kind, q in queries().items():
        search_hits(user=owner, q=q)  # warm-up
        times, found = [], 0
        for _ in range(REPEAT):
            started = time.perf_counter()
            found = len(search_hits(user=owner, q=q))
            times.append((time.perf_counter() - started) * 1000)
        out[kind] = {"medianMs": statistics.median(times), "maxMs": max(times), "hits": found}
    out["vendor"] = connection.vendor
    return out


def inproc(entries: int) -> None:
    """Inside a Django process of the configured database: fill, then measure; JSON out."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dispatch_site.settings")
    django.setup()
    filled = fill(entries)
    print(json.dumps({**filled, "queries": measure()}))


def run_on(env: dict[str, str], entries: int) -> dict:
    from tests.servers import manage, subprocess_env

    manage(["migrate", "--noinput"], **env)
    done = subprocess.run(
        [sys.executable, "-m", "bench.search", "--inproc", "--entries", str(entries)],
        cwd=REPO_ROOT,
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench.search failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(entries: int) -> dict:
    from tests.servers import PostgresServer

    results = {}
    with tempfile.TemporaryDirectory(prefix="dispatch-bench-search-") as directory:
        env = {
            "DISPATCH_VAR_DIR": directory,
            "DISPATCH_SQLITE_PATH": str(Path(directory) / "search.sqlite3"),
        }
        print(f"[bench.search] SQLite, {entries:,} entries", flush=True)
        results["SQLite (FTS5)"] = run_on(env, entries)
    with PostgresServer() as postgres:
        url = postgres.database_create("bench_search")
        print(f"[bench.search] PostgreSQL, {entries:,} entries", flush=True)
        results["PostgreSQL (tsvector + GIN)"] = run_on({"DATABASE_URL": url}, entries)
    return results


def section(results: dict, entries: int) -> str:
    lines = [
        SECTION,
        "",
        f"`selectors.search_hits` (ranked, 20 hits, snippets, titles) over {entries:,} indexed "
        "message texts of one user in 1,000 conversations (+1% of another user's), 24 "
        "Zipf-distributed words each; median of "
        f"{REPEAT} runs after a warm-up, in ms. Generated by `python -m bench.search` "
        f"({time.strftime('%Y-%m-%d %H:%M %Z')}); see its docstring.",
        "",
        "| query | " + " | ".join(f"{name} median | max" for name in results) + " |",
        "|---|" + "---:|---:|" * len(results),
    ]
    kinds = list(next(iter(results.values()))["queries"])
    kinds.remove("vendor")
    for kind in kinds:
        cells = []
        for result in results.values():
            row = result["queries"][kind]
            cells += [f"{row['medianMs']:.1f}", f"{row['maxMs']:.1f}"]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    lines.append(
        "| bulk insert (indexing), s | "
        + " | ".join(f"{r['insertSeconds']} | " for r in results.values())
        + " |"
    )
    lines.append("")
    for name, result in results.items():
        medians = [result["queries"][k]["medianMs"] for k in kinds]
        overall = statistics.median(medians)
        worst = max(medians)
        mark = "**met**" if overall <= TARGET_MS else "**missed**"
        if entries < 1_000_000:
            mark = "not judged: this run is smaller than the 1M reference run"
        lines.append(
            f"Target: median ≤ {TARGET_MS:.0f} ms over 1M chunks; {name}, {entries:,} entries → "
            f"{overall:.1f} ms (median over the query kinds; slowest kind {worst:.1f} ms): {mark}."
        )
        lines.append("")
    return "\n".join(lines)


def write_section(text: str) -> None:
    """Replace the search section of RESULTS.md (or append it)."""
    current = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"{re.escape(SECTION)}\n.*?(?=\n## |\Z)", re.S)
    if pattern.search(current):
        updated = pattern.sub(lambda _: text.rstrip("\n"), current)
    else:
        updated = current.rstrip("\n") + "\n\n" + text
    RESULTS.write_text(updated.rstrip("\n") + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.search", description=__doc__)
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--inproc", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-write", action="store_true", help="print, do not touch RESULTS.md")
    args = parser.parse_args(argv)
    if args.inproc:
        inproc(args.entries)
        return
    text = section(run(args.entries), args.entries)
    print(text)
    if not args.no_write:
        write_section(text)


if __name__ == "__main__":
    main()

"""Measurements that run inside a Django process of the stack (``python -m bench.inproc <cmd>``).

Run in a subprocess with the stack's environment (DATABASE_URL / DISPATCH_VAR_DIR …), so the
selectors and services use exactly the database the workers use. Prints one JSON object.

- ``history --user U --sizes 1000,100000``: bulk-insert conversations of those sizes (raw SQL),
  then time ``history_slice`` for a 100-chunk tail and a full read.
- ``persist``: time ``chunks_append`` of one step of 1, 100 and 1,000 chunks.
- ``page --user U --sizes 100,10000``: conversations of those sizes (sealed turns of a prompt
  and an answer, tests/chat/fill.py), then time ``GET /c/<id>`` through Django's handler (the
  server's whole work: middleware, the windowed transcript, the template) and its bytes.
- ``llama --max-tokens N``: llama-cpp-python called directly on the prompt a Dispatch turn with
  the local model sends (same messages, same model parameters); decode tokens/s of one run
  per line read from stdin.
- ``turnstart --turns N``: the database side of N one-step turns, phase by phase, as a
  worker runs it (the start's checks, the opening transaction, the step's commit, the seal):
  CPU ms per turn of each phase.
- ``observe --deltas N --turns T``: the CPU the telemetry (chat.observe) costs per streamed
  delta and per turn, against the same turns without it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import django

TAIL = 100
PROMPT = "Write a long story about a lighthouse keeper and the sea."


def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dispatch_site.settings")
    django.setup()


def _timed(work, repeat: int) -> list[float]:
    """``work()`` ``repeat`` times; the durations in ms."""
    out = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        out.append((time.perf_counter() - start) * 1000)
    return out


def history(user: str, sizes: list[int]) -> dict:
    """Conversations ``hist-<size>`` of ``size`` chunks; tail and full read times (ms)."""
    from django.contrib.auth.models import User
    from django.db import connection, transaction
    from django.utils import timezone

    from chat.models import Conversation
    from chat.selectors import HistoryWindow, history_slice

    owner = User.objects.get(username=user)
    results: dict[str, dict] = {}
    for size in sizes:
        conversation_id = f"hist-{size}"
        Conversation.objects.filter(pk=conversation_id).delete()
        Conversation.objects.create(
            id=conversation_id, owner=owner, last_seq=size, last_message_ordinal=size
        )
        started = time.perf_counter()
        sql = (
            "INSERT INTO chat_chunk (conversation_id, seq, message, role, type, payload, "
            "turn_id, step_id, created_at) VALUES (%s, %s, %s, %s, 'text', %s, '', '', %s)"
        )
        now = timezone.now()
        batch = 20_000
        with transaction.atomic(), connection.cursor() as cursor:
            for low in range(1, size + 1, batch):
                cursor.executemany(
                    sql,
                    [
                        (
                            conversation_id,
                            seq,
                            seq,
                            "user" if seq % 2 else "assistant",
                            json.dumps({"type": "text", "text": f"chunk {seq} " + "x" * 60}),
                            now,
                        )
                        for seq in range(low, min(low + batch, size + 1))
                    ],
                )
        insert_s = time.perf_counter() - started

        def tail(cid=conversation_id, expect=size):
            chunks, _ = history_slice(conversation_id=cid, window=HistoryWindow(0, None, TAIL))
            assert len(chunks) == min(TAIL, expect)

        def full(cid=conversation_id, expect=size):
            chunks, _ = history_slice(conversation_id=cid, window=HistoryWindow(0, None, None))
            assert len(chunks) == expect

        tails = _timed(tail, 50)
        fulls = _timed(full, 1 if size >= 1_000_000 else 3)
        results[str(size)] = {
            "conversationId": conversation_id,
            "insertSeconds": round(insert_s, 2),
            "tailMs": statistics.median(tails),
            "fullMs": statistics.median(fulls),
            "fullRepeats": len(fulls),
        }
    return results


def page(user: str, sizes: list[int], repeat: int = 30) -> dict:
    """``GET /c/<id>`` of conversations of ``sizes`` chunks: median server ms and bytes.

    The sizes take turns read by read (as the embedded-model benchmark alternates), so a
    drift in the machine's load reaches them alike.
    """
    from django.contrib.auth.models import User
    from django.test import Client

    from chat.models import Conversation
    from tests.chat.fill import conversation_fill

    owner, _ = User.objects.get_or_create(username=user)
    client = Client(SERVER_NAME="127.0.0.1")  # a host ALLOWED_HOSTS has by default
    client.force_login(owner)
    results: dict[str, dict] = {}
    for size in sizes:
        conversation_id = f"page-{size}"
        Conversation.objects.filter(pk=conversation_id).delete()
        started = time.perf_counter()
        conversation_fill(owner=owner, conversation_id=conversation_id, turns=size // 2)
        results[str(size)] = {"fillSeconds": round(time.perf_counter() - started, 1)}
    times: dict[str, list[float]] = {str(size): [] for size in sizes}
    for run in range(-1, repeat):  # run -1 warms the caches (templates, the catalog)
        for size in sizes:
            started = time.perf_counter()
            response = client.get(f"/c/page-{size}")
            elapsed = (time.perf_counter() - started) * 1000
            assert response.status_code == 200, (response.status_code, response.content[:300])
            results[str(size)]["bytes"] = len(response.content)
            if run >= 0:
                times[str(size)].append(elapsed)
    for size, row in results.items():
        row["medianMs"] = statistics.median(times[size])
        row["repeats"] = repeat
    return results


def persist(repeat: int) -> dict:
    """``chunks_append`` of one step (an assistant message of n chunks): median ms per n."""
    from django.contrib.auth.models import User

    from chat.models import Conversation
    from chat.runtime import Message
    from chat.services._log import chunks_append

    owner, _ = User.objects.get_or_create(username="bench-persist")
    results = {}
    for n in (1, 100, 1000):
        conversation_id = f"persist-{n}-{time.monotonic_ns()}"
        Conversation.objects.create(id=conversation_id, owner=owner)
        step = Message("assistant", [{"type": "text", "text": "t" * 80} for _ in range(n)])
        times = _timed(
            lambda cid=conversation_id, m=step: chunks_append(conversation_id=cid, messages=[m]),
            repeat,
        )
        results[str(n)] = {"medianMs": statistics.median(times), "repeats": repeat}
    return results


def llama(max_tokens: int) -> None:
    """Decode tokens/s of llama-cpp-python on the prompt a Dispatch turn sends: one run per
    line read from stdin, its JSON printed (the bench alternates these with Dispatch turns)."""
    import llama_cpp

    from chat.providers.local import _cpu_count, default_model_path, to_chat_messages
    from chat.providers.sampling import EMBEDDED_SAMPLING
    from chat.runtime import Message
    from chat.tools import get_tool_registry

    tools = [tool.spec for tool in get_tool_registry().tools().values()]
    messages = to_chat_messages([Message("user", [{"type": "text", "text": PROMPT}])], tools)
    threads = _cpu_count()
    llm = llama_cpp.Llama(
        model_path=default_model_path(),
        n_ctx=0,
        n_threads=threads,
        n_threads_batch=threads,
        verbose=False,
    )
    print(json.dumps({"ready": True}), flush=True)
    for _ in sys.stdin:
        llm.reset()
        start = time.monotonic()
        first, pieces, finish = None, 0, None
        # The bundled model's sampling, as Dispatch sends it (chat.providers.sampling).
        for chunk in llm.create_chat_completion(
            messages=messages, max_tokens=max_tokens, stream=True, **EMBEDDED_SAMPLING.given()
        ):
            choice = chunk["choices"][0]
            if choice["delta"].get("content"):
                first = first or time.monotonic()
                pieces += 1
            finish = choice["finish_reason"] or finish
        end = time.monotonic()
        # At the length limit the count is exact; otherwise one streamed piece ≈ one token.
        tokens = max_tokens if finish == "length" else pieces
        print(
            json.dumps({"tokens": tokens, "decodeMs": (end - (first or start)) * 1000}), flush=True
        )


def observe(deltas: int, turns: int, repeat: int) -> dict:
    """CPU cost of the telemetry, as µs of process CPU (every thread, the span exporter's too).

    ``runtime``: ``turns`` turns through TurnRunner with no-op ports, one step each of
    ``deltas`` text deltas (and, for the per-turn cost, of 1 delta): without an observer, with
    the metrics observer, with metrics and traces (the SDK, a batch processor, an exporter that
    drops the spans). ``http``: a response of ``deltas`` streamed body messages through the
    request-span middleware (tracing on) and without it. Variants alternate, best of ``repeat``.
    """
    import asyncio

    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    from chat import observe as telemetry
    from chat.observe import tracing
    from chat.runtime import NO_OBSERVER, Finish, TextDelta, TurnConfig, TurnPorts, TurnRunner

    class Drop(SpanExporter):
        def export(self, spans):
            return SpanExportResult.SUCCESS

    class Deltas:
        def __init__(self, count: int) -> None:
            self.events = [TextDelta("tok ")] * count + [Finish("stop")]

        async def stream(self, request):
            for event in self.events:
                yield event

    async def nothing(*args) -> None:
        return None

    async def no_queue() -> list[str]:
        return []

    async def run_turns(count: int, per_step: int, observed: str) -> None:
        provider = Deltas(per_step)
        for index in range(count):
            config = TurnConfig("bench", f"turn-{index}", "hi", [], "bench/model", "model")
            observer = (
                NO_OBSERVER
                if observed == "none"
                else telemetry.turn_observer(config, system="openai", tools=())
            )
            ports = TurnPorts(provider, nothing, nothing, nothing, no_queue, nothing)
            ports.observer = observer
            await TurnRunner(config, ports).run()

    async def stream(scope, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(deltas):
            await send({"type": "http.response.body", "body": b'{"type":"text-delta"}\n',
                        "more_body": True})  # fmt: skip
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def request(app) -> None:
        scope = {"type": "http", "method": "POST", "path": "/chat", "headers": [],
                 "query_string": b"", "scheme": "http", "server": ("127.0.0.1", 8000),
                 "client": ("127.0.0.1", 1), "http_version": "1.1", "root_path": ""}  # fmt: skip

        async def receive() -> dict:
            return {"type": "http.request", "body": b"", "more_body": False}

        await app(scope, receive, nothing)

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(Drop()))

    def cpu(work) -> float:
        start = time.process_time()
        asyncio.run(work())
        return (time.process_time() - start) * 1e6

    best: dict[str, float] = {}
    for _ in range(repeat):
        for observed in ("none", "metrics", "traced"):
            tracing.install(provider if observed == "traced" else None)
            for per_step in (deltas, 1):
                key = f"{observed}/{per_step}"
                spent = cpu(lambda o=observed, n=per_step: run_turns(turns, n, o))
                best[key] = min(best.get(key, spent), spent)
        tracing.install(provider)
        for wrapped in (False, True):
            app = tracing.http_app(stream) if wrapped else stream
            key = f"http/{wrapped}"
            spent = cpu(lambda a=app: request(a))
            best[key] = min(best.get(key, spent), spent)
    tracing.install(None)
    provider.shutdown()

    total = turns * deltas
    base = best[f"none/{deltas}"] / total
    out: dict = {"deltas": deltas, "turns": turns, "repeat": repeat,
                 "baselineUsPerDelta": round(base, 3)}  # fmt: skip
    for observed in ("metrics", "traced"):
        per_delta = (best[f"{observed}/{deltas}"] - best[f"none/{deltas}"]) / total
        per_turn = (best[f"{observed}/1"] - best["none/1"]) / turns
        out[observed] = {
            "addedUsPerDelta": round(per_delta, 3),
            "ratio": round(best[f"{observed}/{deltas}"] / best[f"none/{deltas}"], 4),
            "addedUsPerTurn": round(per_turn, 1),
        }
    out["httpRequestSpan"] = {
        "addedUsPerStreamedLine": round((best["http/True"] - best["http/False"]) / deltas, 3),
        "plainUsPerLine": round(best["http/False"] / deltas, 3),
    }
    return out


def turnstart(turns: int) -> dict:
    """CPU (this thread) per turn of each database phase of a one-step turn, in ms."""
    import asyncio

    from django.contrib.auth.models import User

    from chat import selectors
    from chat.providers import get_catalog
    from chat.runtime import Message, StepMetrics, TurnMetrics, Usage
    from chat.services import _log
    from chat.services import turns as service
    from chat.services.events import _collect

    owner, _ = User.objects.get_or_create(username=f"bench-start-{time.monotonic_ns()}")
    resolved = asyncio.run(get_catalog().resolve(get_catalog().default_model))
    phases = {"check": 0.0, "open": 0.0, "step": 0.0, "seal": 0.0}
    for i in range(turns):
        conversation_id = f"start-{owner.pk}-{i}"
        request = service._TurnRequest(conversation_id=conversation_id, message="go")
        turn_id = f"turn-bench-{owner.pk}-{i}"
        started = time.thread_time()
        selectors.conversation_for_user(user=owner, conversation_id=conversation_id)
        checked = time.thread_time()
        _collect(service._turn_open, {"user": owner, "request": request, "resolved": resolved,
                                      "turn_id": turn_id, "worker": "bench"})  # fmt: skip
        opened = time.thread_time()
        step = Message("assistant", [{"type": "text", "text": "t" * 40}])
        _log.chunks_append(conversation_id=conversation_id, messages=[step], turn_id=turn_id)
        stepped = time.thread_time()
        metrics = TurnMetrics(
            turn_id=turn_id, finish_reason="stop", usage=Usage(10, 10), model=resolved.name,
            duration_ms=500.0, context_size=20,
            steps=(StepMetrics(step_id=f"{turn_id}#0", usage=Usage(10, 10)),),
        )  # fmt: skip
        _collect(service._turn_close, {"turn_id": turn_id, "metrics": metrics})
        sealed = time.thread_time()
        marks = (started, checked, opened, stepped, sealed)
        for phase, a, b in zip(phases, marks[:-1], marks[1:], strict=True):
            phases[phase] += (b - a) * 1000 / turns
    phases["total"] = sum(phases.values())
    return {"turns": turns, "cpuMsPerTurn": phases}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.inproc")
    sub = parser.add_subparsers(dest="command", required=True)
    h = sub.add_parser("history")
    h.add_argument("--user", required=True)
    h.add_argument("--sizes", required=True, help="comma-separated chunk counts")
    p = sub.add_parser("persist")
    p.add_argument("--repeat", type=int, default=10)
    pg = sub.add_parser("page")
    pg.add_argument("--user", required=True)
    pg.add_argument("--sizes", required=True, help="comma-separated chunk counts")
    ll = sub.add_parser("llama")
    ll.add_argument("--max-tokens", type=int, default=128)
    t = sub.add_parser("turnstart")
    t.add_argument("--turns", type=int, default=200)
    o = sub.add_parser("observe")
    o.add_argument("--deltas", type=int, default=2000)
    o.add_argument("--turns", type=int, default=200)
    o.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    _setup()
    if args.command == "history":
        out = history(args.user, [int(s) for s in args.sizes.split(",")])
    elif args.command == "page":
        out = page(args.user, [int(s) for s in args.sizes.split(",")])
    elif args.command == "persist":
        out = persist(args.repeat)
    elif args.command == "turnstart":
        out = turnstart(args.turns)
    elif args.command == "observe":
        out = observe(args.deltas, args.turns, args.repeat)
    else:
        llama(args.max_tokens)
        return
    print(json.dumps(out))


if __name__ == "__main__":
    main()

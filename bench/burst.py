"""Bursts of turn starts: first token, whole-run tail and worker CPU when N turns start at once.

``python -m bench --only-burst`` runs this part alone and rewrites the "Burst of turn starts"
section of bench/RESULTS.md; ``make bench`` runs it with everything else. For each N, the
stand-in is first read directly by N clients that send their requests together (its own TTFT
and per-token latency at that concurrency, in the same run), then N turns are started through
Dispatch within the same few milliseconds: every socket (or NDJSON connection) is open before
the first ``chat.send`` (``POST /chat``) is sent. The workers' CPU time is read from
``/proc/<pid>/stat`` before and after each run (the whole run: starts, streaming, seals).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass

from bench.clients import Run, direct_streams, ndjson_turns, socket_turns
from bench.stack import Stack
from bench.standin import Schedule
from bench.stats import NS_PER_MS, RunStats, percentile, run_stats

SECTION = "## Burst of turn starts"
TTFT_TARGET_MS = 100.0  # Dispatch TTFT p50 − direct p50 at the reference N, one worker
START_CPU_TARGET_MS = 3.0  # worker CPU per short turn
TAIL_TARGET_MS = 10.0  # whole-run added p99 per token at the reference N, one worker
CPU_TARGET_S = 0.12  # worker CPU s per 1,000 relayed tokens at the reference N


@dataclass(frozen=True)
class BurstPlan:
    counts: tuple[int, ...]  # N turns started together, one worker and the cluster
    cpu_counts: tuple[int, ...]  # the CPU and tail rows (WebSocket and NDJSON)
    reference: int  # N of the targets
    start_turns: int  # short turns for the turn-start CPU cost


FULL_BURST = BurstPlan((1, 50, 100, 200), (100, 200), 100, 200)
QUICK_BURST = BurstPlan((1, 20), (20,), 20, 20)


@dataclass
class BurstRow:
    count: int
    ttft_p50_ms: float  # the client's send → first text-delta
    ttft_p99_ms: float
    stats: RunStats
    cpu_s: float  # the workers' CPU over the run
    load: float  # 1-minute load average before the run

    @property
    def cpu_per_1k(self) -> float:
        return self.cpu_s / self.stats.tokens * 1000 if self.stats.tokens else float("nan")


def ttfts_ms(run: Run) -> list[float]:
    return [
        (t.first_delta or t.first_recv) / NS_PER_MS - t.sent / NS_PER_MS
        for t in run.traces
        if (t.first_delta or t.first_recv) and t.sent
    ]


def row(run: Run, expected: int, cpu_s: float, load: float) -> BurstRow:
    ttft = ttfts_ms(run)
    return BurstRow(
        len(run.traces), percentile(ttft, 0.5), percentile(ttft, 0.99),
        run_stats(run, expected), cpu_s, load,
    )  # fmt: skip


async def measured(stack: Stack, job) -> tuple[Run, float, float]:
    load = os.getloadavg()[0]
    before = stack.cpu_seconds()
    run = await job
    return run, stack.cpu_seconds() - before, load


async def burst_runs(
    plan: BurstPlan,
    schedule: Schedule,
    standin_port: int,
    stack: Stack,
    workers: int,
    tag: str,
    log,
    *,
    ndjson: bool,
    short_model: str | None = None,
) -> dict:
    """Direct, WebSocket (and NDJSON) bursts at each N; the start cost with short turns."""
    out: dict = {"direct": {}, "ws": {}, "ndjson": {}}
    deadline = schedule.tokens / schedule.rate + 120
    counts = sorted(set(plan.counts + (plan.cpu_counts if ndjson else ())))
    for n in counts:
        log(f"burst {tag}: {n} direct streams, then {n} turns started together")
        load = os.getloadavg()[0]
        direct = await direct_streams(standin_port, n, together=True)
        out["direct"][n] = row(direct, schedule.tokens, 0.0, load)
        if n in plan.counts:
            run, cpu, load = await measured(stack, socket_turns(
                [stack.ws_url(w) for w in range(workers)], n, per_socket=10,
                prefix=f"{tag}-b{n}", deadline=deadline, together=True,
            ))  # fmt: skip
            out["ws"][n] = row(run, schedule.tokens, cpu, load)
        if ndjson and n in plan.cpu_counts:
            run, cpu, load = await measured(stack, ndjson_turns(
                stack.url(), stack.token, n, prefix=f"{tag}-n{n}", deadline=deadline,
            ))  # fmt: skip
            out["ndjson"][n] = row(run, schedule.tokens, cpu, load)
    if short_model:
        n = plan.start_turns
        log(f"burst {tag}: {n} short turns started together (start cost)")
        run, cpu, load = await measured(stack, socket_turns(
            [stack.ws_url(w) for w in range(workers)], n, per_socket=10,
            prefix=f"{tag}-s{n}", deadline=120 + n * 0.2, model=short_model, together=True,
        ))  # fmt: skip
        errors = sum(1 for t in run.traces if t.error)
        out["start"] = {"turns": n, "cpu_s": cpu, "errors": errors, "load": load,
                        "ttft": row(run, 10, cpu, load)}  # fmt: skip
    return out


def _ms(value: float) -> str:
    return "n/a" if value != value else (f"{value:.2f}" if value < 10 else f"{value:.0f}")


def _mark(ok: bool) -> str:
    return "**met**" if ok else "**missed**"


def section(results: dict, plan: BurstPlan, machine: dict[str, str]) -> str:
    """The Markdown of the burst section (``results``: ``single`` and ``cluster`` of
    ``burst_runs``; ``machine``: bench.report.machine())."""
    single, cluster = results["single"], results.get("cluster")
    out = [
        SECTION,
        "",
        f"Generated {time.strftime('%Y-%m-%d %H:%M %Z')} on {machine['cores']} cores "
        f"({machine['CPU']}; load average at start {machine['load average at start']}). "
        "N turns started within the same few "
        "milliseconds (every socket open first, then all `chat.send` frames at once; 10 "
        "conversations per socket), against N clients reading the stand-in directly that "
        "also send together, in the same run. *TTFT* = the client's send → first `text-delta` "
        "(directly: request → first token). *whole-run added p99* = per-token latency p99 over "
        "the whole run (ramp-up and wind-down included) minus the direct clients' whole-run "
        "p99. *CPU* = the workers' CPU seconds (`/proc/<pid>/stat`, all threads, start to "
        "last `turn-sealed`) ÷ tokens relayed × 1,000. *load* = 1-minute load average before "
        "the run (2 cores; other work shares them).",
        "",
        "| setup | path | N | direct TTFT p50 | p99 | Dispatch TTFT p50 | p99 "
        "| **p50 − direct p50** | whole-run added p99 | CPU s / 1k tokens | tokens | errors "
        "| load |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def rows(label: str, res: dict, path: str, key: str) -> None:
        for n, r in sorted(res[key].items()):
            d = res["direct"][n]
            out.append(
                f"| {label} | {path} | {n} | {_ms(d.ttft_p50_ms)} | {_ms(d.ttft_p99_ms)} "
                f"| {_ms(r.ttft_p50_ms)} | {_ms(r.ttft_p99_ms)} "
                f"| **{_ms(r.ttft_p50_ms - d.ttft_p50_ms)}** "
                f"| {_ms(r.stats.all_p99_ms - d.stats.all_p99_ms)} | {r.cpu_per_1k:.3f} "
                f"| {r.stats.tokens}/{r.stats.expected} | {r.stats.errors} | {r.load:.1f} |"
            )

    rows("1 worker, SQLite", single, "WebSocket", "ws")
    rows("1 worker, SQLite", single, "NDJSON", "ndjson")
    if cluster:
        rows("2 workers, Redis, PostgreSQL", cluster, "WebSocket", "ws")
    ref = plan.reference
    out.append("")
    r, d = single["ws"].get(ref), single["direct"].get(ref)
    if r and d:
        gap = r.ttft_p50_ms - d.ttft_p50_ms
        tail = r.stats.all_p99_ms - d.stats.all_p99_ms
        out += [
            f"Target: TTFT p50 − direct p50 ≤ {TTFT_TARGET_MS:g} ms at {ref} turns, one worker "
            f"→ {_ms(gap)} ms: {_mark(gap <= TTFT_TARGET_MS)}.",
            "",
            f"Target: whole-run added p99 ≤ {TAIL_TARGET_MS:g} ms at {ref} turns, one worker → "
            f"{_ms(tail)} ms: {_mark(tail <= TAIL_TARGET_MS)}.",
            "",
        ]
        for path, key in (("WebSocket", "ws"), ("NDJSON", "ndjson")):
            if ref in single[key]:
                cpu = single[key][ref].cpu_per_1k
                out += [
                    f"Target: worker CPU ≤ {CPU_TARGET_S:g} s per 1,000 tokens at {ref} turns "
                    f"({path}) → {cpu:.3f} s: {_mark(cpu <= CPU_TARGET_S)}.",
                    "",
                ]
    start = single.get("start")
    if start:
        per_turn = start["cpu_s"] / start["turns"] * 1000
        t = start["ttft"]
        out += [
            f"Turn-start cost: {start['turns']} short turns (10 quick tokens each) started "
            f"together on one worker took {start['cpu_s']:.2f} s of worker CPU, start to seal "
            f"({start['errors']} errors; TTFT p50 {_ms(t.ttft_p50_ms)} ms, p99 "
            f"{_ms(t.ttft_p99_ms)} ms; load {start['load']:.1f}).",
            "",
            f"Target: ≤ {START_CPU_TARGET_MS:g} ms of worker CPU per turn → {per_turn:.2f} ms: "
            f"{_mark(per_turn <= START_CPU_TARGET_MS)}.",
            "",
        ]
    return "\n".join(out)


def write_section(path, text: str) -> None:
    """Replace the burst section of RESULTS.md at ``path`` (or append it)."""
    current = path.read_text() if path.exists() else "# Benchmark results\n"
    pattern = re.compile(rf"{re.escape(SECTION)}\n.*?(?=\n## |\Z)", re.S)
    if pattern.search(current):
        # The section ends with one blank line before the next one, as the others do.
        updated = pattern.sub(lambda _: text.rstrip("\n") + "\n", current)
    else:
        updated = current.rstrip("\n") + "\n\n" + text
    path.write_text(updated.rstrip("\n") + "\n")

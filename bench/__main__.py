"""``python -m bench [--quick]``: every benchmark side by side in one run → bench/RESULTS.md.

See docs/benchmarks.md for what each number means and the targets.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench import burst, report
from bench.clients import Trace, direct_streams, socket_turns
from bench.stack import Stack
from bench.standin import Schedule, StandinProcess
from bench.stats import RunStats, median, run_stats
from tests.servers import PostgresServer, RedisServer, subprocess_env

SHORT = "short/standin"  # a stand-in of a few quick tokens: warm-ups and TTFT
LOCAL = "local/smollm2-135m-instruct"
PER_SOCKET = 10  # conversations per WebSocket


@dataclass(frozen=True)
class Plan:
    schedule: Schedule
    latency_counts: tuple[int, ...]
    rate_counts: tuple[int, ...]
    cluster_counts: tuple[int, ...]
    history_sizes: tuple[int, ...]
    page_sizes: tuple[int, ...]
    ttft_turns: int
    local_tokens: int
    local_repeat: int
    burst: burst.BurstPlan


FULL = Plan(Schedule(20, 200, 0.05), (1, 100, 500), (100, 500, 1000), (500, 1000),
            (1_000, 100_000, 1_000_000), (100, 10_000, 1_000_000), 20, 64, 7,
            burst.FULL_BURST)  # fmt: skip
QUICK = Plan(Schedule(20, 40, 0.05), (1, 20), (20, 50), (50,), (1_000, 10_000), (100, 10_000),
             5, 16, 1, burst.QUICK_BURST)  # fmt: skip


def short_credential(url: str) -> str:
    return f'\n[[credentials]]\nname = "short"\nkind = "openai"\nbase_url = "{url}"\n' + (
        'api_key_env = "STANDIN_API_KEY"\nmodels = ["standin"]\n'
    )


def inproc(env: dict[str, str], *args: str) -> dict:
    """Run ``python -m bench.inproc <args>`` with the stack's environment; its JSON."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.inproc", *args],
        cwd=report.REPO_ROOT,
        env=subprocess_env(**env),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench.inproc {args[0]} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


class Bench:
    def __init__(self, plan: Plan):
        self.plan = plan
        self.results: dict = {"plan": plan, "single": {}, "cluster": {}, "direct": {}}
        self.expected = plan.schedule.tokens

    # ------------------------------------------------------------ streaming

    async def warm(self, stack: Stack, workers: int) -> float:
        """One short turn per worker: imports and connections are made before measuring."""
        started = time.monotonic()
        for worker in range(workers):
            run = await socket_turns(
                [stack.ws_url(worker)], 1, per_socket=1, prefix=f"warm{worker}",
                deadline=120, model=SHORT,
            )  # fmt: skip
            if run.traces[0].error:
                raise RuntimeError(f"warm-up turn failed: {run.traces[0].error}")
        return time.monotonic() - started

    async def direct(self, port: int, count: int) -> RunStats:
        if count not in self.results["direct"]:
            log(f"direct: {count} streams")
            run = await direct_streams(port, count)
            self.results["direct"][count] = run_stats(run, self.expected)
        return self.results["direct"][count]

    async def turns(self, stack: Stack, count: int, workers: int, tag: str) -> RunStats:
        log(f"{tag}: {count} concurrent turns over {workers} worker(s)")
        s = self.plan.schedule
        run = await socket_turns(
            [stack.ws_url(w) for w in range(workers)], count, per_socket=PER_SOCKET,
            prefix=f"{tag}-{count}", deadline=s.tokens / s.rate + 120 + count * 0.2,
        )  # fmt: skip
        return run_stats(run, self.expected)

    async def ttft(self, stack: Stack, short_port: int) -> dict:
        """Sequential turns: the stand-in's TTFT seen directly, then through a socket."""
        log("ttft")
        direct, client, server = [], [], []
        for i in range(self.plan.ttft_turns):
            trace = (await direct_streams(short_port, 1)).traces[0]
            direct.append((trace.first_recv - trace.sent) / 1e6)
            trace = await self.one_turn(stack, f"ttft-{i}", SHORT, "go")
            client.append((trace.first_delta - trace.sent) / 1e6)
            server.append(trace.ttft_ms)
        return {"direct": median(direct), "client": median(client), "server": median(server)}

    @staticmethod
    async def one_turn(stack: Stack, conversation_id: str, model: str, message: str) -> Trace:
        run = await socket_turns(
            [stack.ws_url()], 1, per_socket=1, prefix=conversation_id, deadline=600,
            model=model, message=message,
        )  # fmt: skip
        trace = run.traces[0]
        if trace.error or trace.ttft_ms is None:
            raise RuntimeError(f"turn {conversation_id} failed: {trace.error or 'no ttftMs'}")
        return trace

    # ------------------------------------------------------------ reads and writes

    async def history(self, stack: Stack) -> dict:
        log("history: inserting and reading")
        sizes = ",".join(str(n) for n in self.plan.history_sizes)
        out = inproc(stack.env, "history", "--user", "bench", "--sizes", sizes)
        async with httpx.AsyncClient(base_url=stack.url(), headers=stack.headers, timeout=300) as c:
            for size, row in out.items():
                path = f"/conversations/{row['conversationId']}"
                times = []
                for _ in range(30):
                    started = time.perf_counter()
                    response = await c.get(path, params={"limit": 100})
                    times.append((time.perf_counter() - started) * 1000)
                    assert len(response.json()["chunks"]) == min(100, int(size))
                row["httpTailMs"] = median(times)
                if int(size) <= 100_000:
                    started = time.perf_counter()
                    response = await c.get(path)
                    row["httpFullMs"] = (time.perf_counter() - started) * 1000
                    assert len(response.json()["chunks"]) == int(size)
        return out

    def page(self, stack: Stack) -> dict:
        log("conversation page: filling and reading GET /c/<id>")
        sizes = ",".join(str(n) for n in self.plan.page_sizes)
        return inproc(stack.env, "page", "--user", "bench-page", "--sizes", sizes)

    # ------------------------------------------------------------ the embedded model

    async def embedded(self, short_url: str) -> dict:
        log("embedded model: llama-cpp-python directly and through Dispatch, alternating")
        plan = self.plan
        extra = short_credential(short_url) + (
            f'\n[runtime]\nmax_tokens = {plan.local_tokens}\n'
            '\n[[credentials]]\nname = "local"\nkind = "local"\n'
            'models = ["smollm2-135m-instruct"]\n'
        )  # fmt: skip
        # Direct runs and Dispatch turns alternate, so a drift in the machine's speed (other
        # load, clocks) reaches both sides alike. The direct process loads the model first.
        rates, direct_rates = [], []
        with Stack(short_url, config_extra=extra) as stack:
            direct = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bench.inproc", "llama",
                "--max-tokens", str(plan.local_tokens),
                cwd=report.REPO_ROOT, env=subprocess_env(**stack.env),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            )  # fmt: skip
            assert direct.stdin is not None and direct.stdout is not None
            try:
                if b"ready" not in await direct.stdout.readline():
                    raise RuntimeError("bench.inproc llama did not start")
                for i in range(-1, plan.local_repeat):  # run -1 warms both sides up
                    direct.stdin.write(b"run\n")
                    await direct.stdin.drain()
                    run = json.loads(await direct.stdout.readline())
                    trace = await self.one_turn(stack, f"local{i}", LOCAL, inproc_prompt())
                    if not trace.decode_ms or not trace.output_tokens:
                        raise RuntimeError("the local turn reported no decodeMs/outputTokens")
                    if i >= 0:
                        direct_rates.append(run["tokens"] / run["decodeMs"] * 1000)
                        rates.append(trace.output_tokens / trace.decode_ms * 1000)
            finally:
                direct.kill()
                await direct.wait()
        return {"dispatch": rates, "direct": direct_rates}

    # ------------------------------------------------------------ bursts of turn starts

    async def bursts(self, stack: Stack, port: int, workers: int) -> dict:
        single = workers == 1
        return await burst.burst_runs(
            self.plan.burst, self.plan.schedule, port, stack, workers,
            "single" if single else "cluster", log, ndjson=single,
            short_model=SHORT if single else None,
        )  # fmt: skip

    async def run_bursts(self, cluster: bool) -> dict:
        """Only the burst section (``--only-burst``)."""
        plan, r = self.plan, self.results
        r["burst"] = {}
        with (
            StandinProcess(plan.schedule) as standin,
            StandinProcess(Schedule(200, 10, 0.05)) as short,
        ):
            with Stack(standin.url, config_extra=short_credential(short.url)) as stack:
                await self.warm(stack, 1)
                r["burst"]["single"] = await self.bursts(stack, standin.port, 1)
            if cluster:
                with RedisServer() as redis, PostgresServer() as postgres:
                    env = {
                        "DATABASE_URL": postgres.database_create("bench"),
                        "REDIS_URL": redis.url,
                    }
                    with Stack(
                        standin.url, workers=2, env=env, config_extra=short_credential(short.url)
                    ) as stack:
                        await self.warm(stack, 2)
                        r["burst"]["cluster"] = await self.bursts(stack, standin.port, 2)
        return r

    # ------------------------------------------------------------ the whole run

    async def run(self) -> dict:
        plan, r = self.plan, self.results
        with (
            StandinProcess(plan.schedule) as standin,
            StandinProcess(Schedule(200, 10, 0.05)) as short,
        ):
            with Stack(standin.url, config_extra=short_credential(short.url)) as stack:
                r["coldFirstTurnS"] = await self.warm(stack, 1)
                for count in sorted(set(plan.latency_counts + plan.rate_counts)):
                    await self.direct(standin.port, count)
                    r["single"][count] = await self.turns(stack, count, 1, "single")
                r["ttft"] = await self.ttft(stack, short.port)
                r["history"] = await self.history(stack)
                r["persistSqlite"] = inproc(stack.env, "persist")
                r["page"] = self.page(stack)
                r["burst"] = {"single": await self.bursts(stack, standin.port, 1)}
            with RedisServer() as redis, PostgresServer() as postgres:
                database = postgres.database_create("bench")
                env = {"DATABASE_URL": database, "REDIS_URL": redis.url}
                log("cluster: two workers + Redis + PostgreSQL")
                with Stack(
                    standin.url, workers=2, env=env, config_extra=short_credential(short.url)
                ) as cluster:
                    await self.warm(cluster, 2)
                    for count in plan.cluster_counts:
                        await self.direct(standin.port, count)
                        r["cluster"][count] = await self.turns(cluster, count, 2, "cluster")
                    r["persistPostgres"] = inproc(cluster.env, "persist")
                    r["burst"]["cluster"] = await self.bursts(cluster, standin.port, 2)
            try:
                r["embedded"] = await self.embedded(short.url)
            except Exception as exc:  # reported as "not measured" with the reason
                r["embedded"] = {"error": str(exc)[-500:]}
        return r


def inproc_prompt() -> str:
    from bench.inproc import PROMPT

    return PROMPT


def page_only(plan: Plan, out: Path) -> None:
    """Measure the conversation page alone and replace its section of ``out``."""
    started = time.monotonic()
    machine = report.machine()
    with StandinProcess(Schedule(200, 10, 0.05)) as short, Stack(short.url) as stack:
        result = Bench(plan).page(stack)
    section = report.page_section(result, machine, time.monotonic() - started)
    out.write_text(report.replace_section(out.read_text(), report.PAGE_TITLE, section))
    print(section)


def keep_search_section(path: Path, text: str) -> str:
    """``text`` with the full-text search section of the report at ``path`` (written by
    ``python -m bench.search``, a run of its own) carried over, if it has one."""
    import re

    from bench.search import SECTION

    old = path.read_text() if path.exists() else ""
    found = re.search(rf"{re.escape(SECTION)}\n.*?(?=\n## |\Z)", old, re.S)
    return (
        text if found is None else text.rstrip("\n") + "\n\n" + found.group(0).rstrip("\n") + "\n"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a fast smoke run (small counts)")
    parser.add_argument("--out", type=Path, default=report.REPO_ROOT / "bench" / "RESULTS.md")
    parser.add_argument(
        "--only-page",
        action="store_true",
        help="measure only GET /c/<id> and replace that section of --out",
    )
    parser.add_argument(
        "--only-burst", action="store_true",
        help="only the burst section (rewritten in place in --out)",
    )  # fmt: skip
    parser.add_argument(
        "--no-cluster", action="store_true", help="with --only-burst: one worker only"
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    if args.only_page:
        page_only(plan, args.out)
        return
    started = time.monotonic()
    machine = report.machine()
    if args.only_burst:
        results = asyncio.run(Bench(plan).run_bursts(not args.no_cluster))
        text = burst.section(results["burst"], plan.burst, machine)
        burst.write_section(args.out, text)
        print(text)
        log(f"done in {time.monotonic() - started:.0f}s → {args.out}")
        return
    results = asyncio.run(Bench(plan).run())
    results["elapsedS"] = time.monotonic() - started
    text = report.render(results, machine, quick=args.quick)
    args.out.write_text(keep_search_section(args.out, text))
    print(text)
    log(f"done in {results['elapsedS']:.0f}s → {args.out}")


if __name__ == "__main__":
    main()

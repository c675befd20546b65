"""Turning a measured run into numbers: latency percentiles and the delivered-rate ratio.

The steady window of a run is the span in which (nearly) all of its streams were streaming at
once: from the time 95 % of them had written their first token to the time the first 5 % had
written their last. Ramp-up (turn starts) and wind-down (persisting, sealing) fall outside it;
the "all" figures include them.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.clients import Run

NS_PER_MS = 1_000_000


def percentile(values, fraction: float) -> float:
    """The ``fraction`` percentile (nearest rank) of ``values``; NaN when empty."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def median(values) -> float:
    return percentile(values, 0.5)


def steady_window(run: Run) -> tuple[int, int]:
    firsts = sorted(t.first_stamp for t in run.traces if t.tokens)
    lasts = sorted(t.last_stamp for t in run.traces if t.tokens)
    if not firsts:
        return 0, 0
    start = firsts[int(0.95 * (len(firsts) - 1))]
    end = lasts[int(0.05 * (len(lasts) - 1))]
    if end <= start:  # the ramp outlasted the streams: fall back to the middle half
        start, end = firsts[len(firsts) // 2], lasts[len(lasts) // 2]
    return start, end


@dataclass
class RunStats:
    streams: int
    tokens: int  # tokens received
    expected: int
    errors: int
    p50_ms: float  # per-token latency, stand-in write → client receive, steady window
    p99_ms: float
    all_p50_ms: float  # the same over the whole run
    all_p99_ms: float
    written_per_s: float  # tokens/s the stand-in wrote in the steady window (all streams)
    delivered: float  # the steady window's tokens: time to write them ÷ time to receive them
    delivered_whole: float  # every token: first→last write ÷ first write→last arrival
    window_s: float
    wall_s: float


def run_stats(run: Run, tokens_per_stream: int) -> RunStats:
    start, end = steady_window(run)
    steady, sent, received = [], [], []
    for latency, stamp in zip(run.latencies, run.stamps, strict=True):
        if start <= stamp <= end:
            steady.append(latency)
            sent.append(stamp)
            received.append(stamp + latency)
    window_s = (end - start) / 1e9
    # The tokens written in the window took this long to write and this long to arrive; the
    # outer 0.5 % on each side are left out so that one straggler does not decide the ratio.
    sent_span = percentile(sent, 0.995) - percentile(sent, 0.005)
    received_span = percentile(received, 0.995) - percentile(received, 0.005)
    # The whole run, ramp-up included: a server that falls behind stretches the arrivals.
    first_write = min(run.stamps, default=0)
    write_span = max(run.stamps, default=0) - first_write
    arrival_span = (
        max(
            (stamp + latency for stamp, latency in zip(run.stamps, run.latencies, strict=True)),
            default=0,
        )
        - first_write
    )
    return RunStats(
        streams=len(run.traces),
        tokens=len(run.latencies),
        expected=len(run.traces) * tokens_per_stream,
        errors=sum(1 for t in run.traces if t.error),
        p50_ms=percentile(steady, 0.5) / NS_PER_MS,
        p99_ms=percentile(steady, 0.99) / NS_PER_MS,
        all_p50_ms=percentile(run.latencies, 0.5) / NS_PER_MS,
        all_p99_ms=percentile(run.latencies, 0.99) / NS_PER_MS,
        written_per_s=len(sent) / window_s if window_s > 0 else float("nan"),
        delivered=sent_span / received_span if received_span > 0 else float("nan"),
        delivered_whole=write_span / arrival_span if arrival_span > 0 else float("nan"),
        window_s=window_s,
        wall_s=run.wall_s,
    )

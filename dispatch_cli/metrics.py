"""The turn metrics line, in the project's format (docs/protocol.md#8-web-app-socket, as the web app shows it).

``turn 3 · 1,234 tok (1,000 in / 234 out[ / 800 cache]) · 42 tok/s · 1.2s`` (``~`` marking an
output counted from the stream: ``~45 tok (~45 out)``) from a docs/protocol.md#2-chunks-and-the-log
``TurnMetrics`` dict. The CLI cannot import the server's ``metrics/format.py``, so this is a
copy of its turn row; tests/cli/test_metrics_line.py holds the two to the same output.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

SEPARATOR = " · "


def _half_up(value: float, places: int) -> Decimal:
    # As written (9.95 → 10.0), not its binary neighbour, and half-up, not banker's rounding.
    return Decimal(str(value)).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def tokens(count: int) -> str:
    return f"{count:,}"


def duration(ms: float) -> str:
    """``850ms`` below one second (after rounding), else ``1.2s``."""
    whole_ms = _half_up(ms, 0)
    if whole_ms < 1000:
        return f"{whole_ms}ms"
    return f"{_half_up(ms / 1000, 1)}s"


def tps(value: float) -> str:
    """``7.5 tok/s`` below 10 (after rounding to one decimal), else ``42 tok/s``."""
    one_decimal = _half_up(value, 1)
    if one_decimal < 10:
        return f"{one_decimal} tok/s"
    return f"{_half_up(value, 0)} tok/s"


def _generation_ms(turn: dict) -> float | None:
    """The generation time (``decodeMs ?? genTotalMs``) of the steps that produced output
    tokens; None with no such timing."""
    times = []
    for step in turn.get("steps") or ():
        if not (step.get("usage") or {}).get("outputTokens"):
            continue
        ms = step.get("decodeMs")
        if ms is None:
            ms = step.get("genTotalMs")
        if ms is not None:
            times.append(ms)
    return sum(times) if times else None


def turn_line(turn: dict, number: int) -> str:
    usage = turn["usage"]
    mark = "~" if usage.get("estimated") else ""
    split = [] if mark and not usage["inputTokens"] else [f"{tokens(usage['inputTokens'])} in"]
    split.append(f"{mark}{tokens(usage['outputTokens'])} out")
    if usage.get("cacheReadTokens"):
        split.append(f"{tokens(usage['cacheReadTokens'])} cache")
    total = usage["inputTokens"] + usage["outputTokens"]
    parts = [f"turn {number}", f"{mark}{tokens(total)} tok ({' / '.join(split)})"]
    ms = _generation_ms(turn)
    if ms is not None and ms > 0:
        parts.append(tps(usage["outputTokens"] / ms * 1000))
    if turn.get("durationMs") is not None:
        parts.append(duration(turn["durationMs"]))
    return SEPARATOR.join(parts)

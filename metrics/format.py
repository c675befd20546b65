"""SPEC §6 metrics formatting as pure functions (the transcript rows and the metrics page).

Inputs are the SPEC §2 wire shapes: ``StepMetrics`` and ``TurnMetrics`` dicts, so live rows
(built from ``step-complete``/``usage``/``done`` events) and stored rows format identically.

Missing parts are left out of a row rather than shown as a placeholder: a step without timing
reads ``step 2 · 1,234 tok``; a turn without cache reads has no ``/ N cache`` part (nor does one
whose cache read count is 0); no TTFT gives an empty tooltip.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

SEPARATOR = " · "


def _half_up(value: float, places: int) -> Decimal:
    # Decimal(str(x)) rounds the number as written (9.95 → 10.0), not its binary neighbour
    # (9.9499999…), and half-up avoids banker's rounding (2.5ms → 3ms).
    return Decimal(str(value)).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def format_tokens(count: int) -> str:
    """Tokens with thousands separators: ``1,234``."""
    return f"{count:,}"


def format_duration(ms: float) -> str:
    """``850ms`` below one second, else seconds with one decimal: ``1.2s``.

    The unit is chosen on the rounded value, so 999.9 ms reads ``1.0s`` and never ``1000ms``.
    """
    whole_ms = _half_up(ms, 0)
    if whole_ms < 1000:
        return f"{whole_ms}ms"
    return f"{_half_up(ms / 1000, 1)}s"


def format_tps(tps: float) -> str:
    """One decimal below 10 tok/s, else rounded: ``7.5 tok/s``, ``42 tok/s``.

    Like durations, the form is chosen on the rounded value: 9.95 reads ``10 tok/s``.
    """
    one_decimal = _half_up(tps, 1)
    if one_decimal < 10:
        return f"{one_decimal} tok/s"
    return f"{_half_up(tps, 0)} tok/s"


def tokens_per_second(output_tokens: int, ms: float | None) -> float | None:
    """TPS = outputTokens / ms × 1000; None when there is no (positive) time to divide by."""
    if ms is None or ms <= 0:
        return None
    return output_tokens / ms * 1000


def step_generation_ms(step: dict) -> float | None:
    """The time a step's TPS divides by: ``decodeMs ?? genTotalMs`` (SPEC §2)."""
    decode = step.get("decodeMs")
    return decode if decode is not None else step.get("genTotalMs")


def turn_generation_ms(turn: dict) -> float | None:
    """Sum of the steps' generation times; None when no step has any timing."""
    times = [t for t in (step_generation_ms(s) for s in turn.get("steps", [])) if t is not None]
    return sum(times) if times else None


def step_tps(step: dict) -> float | None:
    return tokens_per_second(step["usage"]["outputTokens"], step_generation_ms(step))


def turn_tps(turn: dict) -> float | None:
    """A turn's TPS, weighted by tokens: all output tokens over all steps' generation time."""
    return tokens_per_second(turn["usage"]["outputTokens"], turn_generation_ms(turn))


def _total_tokens(usage: dict) -> int:
    return usage["inputTokens"] + usage["outputTokens"]


def step_row(step: dict, number: int) -> dict:
    """``step N · {in+out} tok · {TPS} · {genTotal}``, the TTFT as the tooltip ``title``."""
    parts = [f"step {number}", f"{format_tokens(_total_tokens(step['usage']))} tok"]
    tps = step_tps(step)
    if tps is not None:
        parts.append(format_tps(tps))
    if step.get("genTotalMs") is not None:
        parts.append(format_duration(step["genTotalMs"]))
    ttft = step.get("ttftMs")
    title = f"TTFT {format_duration(ttft)}" if ttft is not None else ""
    return {"text": SEPARATOR.join(parts), "title": title}


def turn_row(turn: dict, number: int) -> dict:
    """``turn N · {in+out} tok ({in} in / {out} out[ / {cacheRead} cache]) · {TPS} · {duration}``.

    The tooltip ``title`` carries the model, the finish reason and the first step's TTFT.
    """
    usage = turn["usage"]
    split = [
        f"{format_tokens(usage['inputTokens'])} in",
        f"{format_tokens(usage['outputTokens'])} out",
    ]
    if usage.get("cacheReadTokens"):
        split.append(f"{format_tokens(usage['cacheReadTokens'])} cache")
    parts = [
        f"turn {number}",
        f"{format_tokens(_total_tokens(usage))} tok ({' / '.join(split)})",
    ]
    tps = turn_tps(turn)
    if tps is not None:
        parts.append(format_tps(tps))
    if turn.get("durationMs") is not None:
        parts.append(format_duration(turn["durationMs"]))
    title = [turn[key] for key in ("model", "finishReason") if turn.get(key)]
    ttft = next((s["ttftMs"] for s in turn.get("steps") or () if s.get("ttftMs") is not None), None)
    if ttft is not None:  # the first step that streamed tokens (tool-only steps have none)
        title.append(f"TTFT {format_duration(ttft)}")
    return {"text": SEPARATOR.join(parts), "title": SEPARATOR.join(title)}

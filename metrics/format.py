"""docs/protocol.md#8-web-app-socket metrics formatting as pure functions (the transcript rows and the metrics page).

Inputs are the typed docs/protocol.md#2-chunks-and-the-log ``StepMetrics`` and ``TurnMetrics`` (chat.runtime.types), so live
rows (built from ``step-complete``/``usage``/``done`` events) and stored rows format identically.

Missing parts are left out of a row rather than shown as a placeholder: a step without timing
reads ``step 2 · 1,234 tok``; a turn without cache reads has no ``/ N cache`` part (nor does one
whose cache read count is 0); no TTFT gives an empty tooltip. Estimated output (a step stopped
or failed before the provider reported its usage) is marked ``~``: ``~1,279 tok (1,200 in /
~79 out)``, and its unknown input is left out: ``~45 tok (~45 out)``.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from chat.runtime.types import StepMetrics, TurnMetrics, Usage

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


def step_generation_ms(step: StepMetrics) -> float | None:
    """The time a step's TPS divides by: ``decodeMs ?? genTotalMs`` (docs/protocol.md#2-chunks-and-the-log)."""
    return step.decode_ms if step.decode_ms is not None else step.gen_total_ms


def turn_generation_ms(turn: TurnMetrics) -> float | None:
    """Sum of the generation times of the steps that produced output tokens; None when no
    such step has a timing. Tokens and time come from the same steps, so a step that produced
    nothing (failed before its first token, stopped while the prompt was read) cannot drag a
    model's throughput down, and a stopped step counts its estimated tokens over its time."""
    times = [
        t
        for t in (step_generation_ms(s) for s in turn.steps if s.usage.output_tokens > 0)
        if t is not None
    ]
    return sum(times) if times else None


def turn_ttft_ms(turn: TurnMetrics) -> float | None:
    """The TTFT of the first step that streamed tokens (a step that only called tools has none)."""
    return next((s.ttft_ms for s in turn.steps if s.ttft_ms is not None), None)


def step_tps(step: StepMetrics) -> float | None:
    return tokens_per_second(step.usage.output_tokens, step_generation_ms(step))


def turn_tps(turn: TurnMetrics) -> float | None:
    """A turn's TPS, weighted by tokens: all output tokens over all steps' generation time."""
    return tokens_per_second(turn.usage.output_tokens, turn_generation_ms(turn))


def _mark(usage: Usage) -> str:
    return "~" if usage.estimated else ""


def _total_tokens(usage: Usage) -> str:
    """``in + out`` with thousands separators, ``~`` when the output is estimated."""
    return _mark(usage) + format_tokens(usage.input_tokens + usage.output_tokens)


def step_row(step: StepMetrics, number: int) -> dict:
    """``step N · {in+out} tok · {TPS} · {genTotal}``, the TTFT as the tooltip ``title``."""
    parts = [f"step {number}", f"{_total_tokens(step.usage)} tok"]
    tps = step_tps(step)
    if tps is not None:
        parts.append(format_tps(tps))
    if step.gen_total_ms is not None:
        parts.append(format_duration(step.gen_total_ms))
    title = f"TTFT {format_duration(step.ttft_ms)}" if step.ttft_ms is not None else ""
    return {"text": SEPARATOR.join(parts), "title": title}


def compaction_row(step: StepMetrics) -> dict:
    """``compaction · {in+out} tok · {genTotal}``: a compaction's model call, TTFT as ``title``."""
    parts = ["compaction", f"{_total_tokens(step.usage)} tok"]
    if step.gen_total_ms is not None:
        parts.append(format_duration(step.gen_total_ms))
    title = f"TTFT {format_duration(step.ttft_ms)}" if step.ttft_ms is not None else ""
    return {"text": SEPARATOR.join(parts), "title": title}


def turn_row(turn: TurnMetrics, number: int) -> dict:
    """``turn N · {in+out} tok ({in} in / {out} out[ / {cacheRead} cache]) · {TPS} · {duration}``.

    The tooltip ``title`` carries the model, the finish reason and the turn's TTFT.
    """
    usage = turn.usage
    split = [f"{format_tokens(usage.input_tokens)} in"]
    if usage.estimated and not usage.input_tokens:
        split = []  # unknown, not zero
    split.append(f"{_mark(usage)}{format_tokens(usage.output_tokens)} out")
    if usage.cache_read_tokens:
        split.append(f"{format_tokens(usage.cache_read_tokens)} cache")
    parts = [
        f"turn {number}",
        f"{_total_tokens(usage)} tok ({' / '.join(split)})",
    ]
    tps = turn_tps(turn)
    if tps is not None:
        parts.append(format_tps(tps))
    if turn.duration_ms is not None:
        parts.append(format_duration(turn.duration_ms))
    title = [value for value in (turn.model, turn.finish_reason) if value]
    ttft = turn_ttft_ms(turn)
    if ttft is not None:
        title.append(f"TTFT {format_duration(ttft)}")
    if usage.estimated:
        title.append("~ output counted from the stream (no usage reported)")
    return {"text": SEPARATOR.join(parts), "title": SEPARATOR.join(title)}

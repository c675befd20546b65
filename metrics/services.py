"""Writes of the metrics app: called by chat.services.turn_seal inside its transaction."""

from metrics.format import turn_generation_ms
from metrics.models import StepMetrics, TurnMetrics


def _sum(values):
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def turn_metrics_record(*, turn, metrics: dict) -> TurnMetrics:
    """Store a TurnMetrics dict (SPEC §2 shape) and its steps."""
    usage = metrics.get("usage", {})
    steps = metrics.get("steps", [])
    row = TurnMetrics.objects.create(
        turn=turn,
        conversation_id=turn.conversation_id,
        model=metrics.get("model") or "",
        finish_reason=metrics["finishReason"],
        input_tokens=usage.get("inputTokens", 0),
        output_tokens=usage.get("outputTokens", 0),
        cache_read_tokens=usage.get("cacheReadTokens"),
        cache_write_tokens=usage.get("cacheWriteTokens"),
        duration_ms=metrics.get("durationMs"),
        context_size=metrics.get("contextSize"),
        gen_total_ms=_sum(s.get("genTotalMs") for s in steps),
        decode_ms=_sum(s.get("decodeMs") for s in steps),
        generation_ms=turn_generation_ms(metrics),
        # The turn's time to first token: the first step that streamed any (a step that only
        # called tools has none).
        ttft_ms=next((s["ttftMs"] for s in steps if s.get("ttftMs") is not None), None),
    )
    StepMetrics.objects.bulk_create(
        StepMetrics(
            turn_metrics=row,
            step_id=step["stepId"],
            index=index,
            input_tokens=step["usage"].get("inputTokens", 0),
            output_tokens=step["usage"].get("outputTokens", 0),
            cache_read_tokens=step["usage"].get("cacheReadTokens"),
            cache_write_tokens=step["usage"].get("cacheWriteTokens"),
            ttft_ms=step.get("ttftMs"),
            decode_ms=step.get("decodeMs"),
            gen_total_ms=step.get("genTotalMs"),
        )
        for index, step in enumerate(steps)
    )
    return row

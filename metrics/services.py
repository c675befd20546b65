"""Writes of the metrics app: called by chat.services.turn_seal inside its transaction.

Plain statements (chat.rawsql): every turn's seal writes these rows."""

from django.utils import timezone

from chat import rawsql
from chat.runtime.types import TurnMetrics
from metrics.format import turn_generation_ms, turn_ttft_ms
from metrics.models import StepMetrics as StepMetricsRow
from metrics.models import TurnMetrics as TurnMetricsRow

TURN_INSERT = rawsql.Insert(TurnMetricsRow, returning="id")
STEP_INSERT = rawsql.Insert(StepMetricsRow)


def _sum(values):
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def turn_metrics_record(
    *, turn_id: str, conversation_id: str, metrics: TurnMetrics, copied: bool = False
) -> int:
    """Store a turn's TurnMetrics and its steps (the turn-level sums kept for aggregation);
    ``copied`` for a copy made by a fork or an import (left out of the aggregates). Returns
    the TurnMetrics row's id."""
    usage, steps = metrics.usage, metrics.steps
    now = timezone.now()
    row_id = TURN_INSERT.one(
        TURN_INSERT.values(
            now,
            turn_id=turn_id,
            conversation_id=conversation_id,
            model=metrics.model or "",
            finish_reason=metrics.finish_reason,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            output_tokens_estimated=usage.estimated,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            duration_ms=metrics.duration_ms,
            context_size=metrics.context_size,
            gen_total_ms=_sum(s.gen_total_ms for s in steps),
            decode_ms=_sum(s.decode_ms for s in steps),
            generation_ms=turn_generation_ms(metrics),
            ttft_ms=turn_ttft_ms(metrics),
            copied=copied,
        )
    )
    STEP_INSERT.many(
        STEP_INSERT.values(
            now,
            turn_metrics_id=row_id,
            step_id=step.step_id,
            index=index,
            input_tokens=step.usage.input_tokens,
            output_tokens=step.usage.output_tokens,
            output_tokens_estimated=step.usage.estimated,
            cache_read_tokens=step.usage.cache_read_tokens,
            cache_write_tokens=step.usage.cache_write_tokens,
            ttft_ms=step.ttft_ms,
            decode_ms=step.decode_ms,
            gen_total_ms=step.gen_total_ms,
            kind=step.kind,
        )
        for index, step in enumerate(steps)
    )
    return row_id

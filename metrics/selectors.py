"""Reads of the metrics app: a conversation's TurnMetrics and throughput over a period."""

from __future__ import annotations

import calendar
import datetime as dt
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import (
    Avg,
    Case,
    Count,
    F,
    FloatField,
    IntegerField,
    QuerySet,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Cast
from django.utils import timezone

from chat.runtime.types import StepMetrics, TurnMetrics, Usage
from metrics.models import StepMetrics as StepMetricsRow
from metrics.models import TurnMetrics as TurnMetricsRow

PERIODS = ("day", "week", "month")

_TURN_FIELDS = (
    "id",
    "turn_id",
    "turn__kind",
    "model",
    "finish_reason",
    "input_tokens",
    "output_tokens",
    "output_tokens_estimated",
    "cache_read_tokens",
    "cache_write_tokens",
    "duration_ms",
    "context_size",
)
_STEP_FIELDS = (
    "turn_metrics_id",
    "step_id",
    "input_tokens",
    "output_tokens",
    "output_tokens_estimated",
    "cache_read_tokens",
    "cache_write_tokens",
    "ttft_ms",
    "decode_ms",
    "gen_total_ms",
    "kind",
)


def _usage(row: dict) -> Usage:
    return Usage(
        row["input_tokens"],
        row["output_tokens"],
        row["cache_read_tokens"],
        row["cache_write_tokens"],
        row["output_tokens_estimated"],
    )


def conversation_turn_metrics(*, conversation_id: str) -> list[TurnMetrics]:
    """Every sealed turn of the conversation in order, as docs/protocol.md#2-chunks-and-the-log ``TurnMetrics``.

    A TurnMetrics row exists only for a sealed turn (it is written by ``turn_seal`` in the
    sealing transaction), so no join on the turn's status is needed. Two queries, whatever
    the number of turns and steps; steps of a turn sealed between them are left out with it.
    """
    return _turn_metrics(
        TurnMetricsRow.objects.filter(conversation_id=conversation_id),
        StepMetricsRow.objects.filter(turn_metrics__conversation_id=conversation_id),
    )


def turn_metrics_by_id(*, turn_ids: list[str]) -> dict[str, TurnMetrics]:
    """The TurnMetrics of these turns (the sealed ones), by turn id. Two queries."""
    if not turn_ids:
        return {}
    turns = _turn_metrics(
        TurnMetricsRow.objects.filter(turn_id__in=turn_ids),
        StepMetricsRow.objects.filter(turn_metrics__turn_id__in=turn_ids),
    )
    return {turn.turn_id: turn for turn in turns}


def latest_context_size(*, conversation_id: str) -> int | None:
    """The contextSize of the conversation's newest sealed turn that has one."""
    return (
        TurnMetricsRow.objects.filter(conversation_id=conversation_id, context_size__isnull=False)
        .order_by("-created_at", "-id")
        .values_list("context_size", flat=True)
        .first()
    )


def _turn_metrics(rows: QuerySet, step_rows: QuerySet) -> list[TurnMetrics]:
    """TurnMetrics of ``rows`` in seal order, with their steps from ``step_rows``."""
    turns = list(rows.order_by("created_at", "id").values(*_TURN_FIELDS))
    steps_by_turn: dict[int, list[StepMetrics]] = {row["id"]: [] for row in turns}
    if turns:
        for row in step_rows.order_by("turn_metrics_id", "index").values(*_STEP_FIELDS):
            steps = steps_by_turn.get(row["turn_metrics_id"])
            if steps is None:  # its turn sealed after the first query: the next read has it
                continue
            steps.append(
                StepMetrics(
                    step_id=row["step_id"],
                    usage=_usage(row),
                    ttft_ms=row["ttft_ms"],
                    decode_ms=row["decode_ms"],
                    gen_total_ms=row["gen_total_ms"],
                    kind=row["kind"],
                )
            )
    return [
        TurnMetrics(
            turn_id=row["turn_id"],
            finish_reason=row["finish_reason"],
            usage=_usage(row),
            model=row["model"] or None,
            duration_ms=row["duration_ms"],
            context_size=row["context_size"],
            steps=tuple(steps_by_turn[row["id"]]),
            kind=row["turn__kind"],
        )
        for row in turns
    ]


@dataclass(frozen=True)
class Window:
    """A period in the server's time zone: the half-open range [start, end)."""

    period: str
    first_day: dt.date
    start: dt.datetime
    end: dt.datetime
    tz: ZoneInfo

    @property
    def label(self) -> str:
        """The ``date`` echoed by the API: ``YYYY-MM`` for a month, else the first day."""
        if self.period == "month":
            return self.first_day.strftime("%Y-%m")
        return self.first_day.isoformat()

    def shifted(self, periods: int) -> Window | None:
        """The window ``periods`` periods later (earlier when negative); None past the
        supported days (``period_window``)."""
        try:
            if self.period == "day":
                day = self.first_day + dt.timedelta(days=periods)
            elif self.period == "week":
                day = self.first_day + dt.timedelta(weeks=periods)
            else:
                months = self.first_day.year * 12 + self.first_day.month - 1 + periods
                day = dt.date(months // 12, months % 12 + 1, 1)
            return period_window(self.period, day.isoformat())
        except (ValueError, OverflowError):
            return None


_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_MONTH = re.compile(r"\d{4}-\d{2}")
_ISO_WEEK = re.compile(r"(\d{4})-W(\d{2})")


def server_timezone() -> ZoneInfo:
    return ZoneInfo(settings.TIME_ZONE)


def _parse_day(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"date {text!r} is not a valid YYYY-MM-DD day") from None


def _first_day(period: str, date: str | None, today: dt.date) -> dt.date:
    if date is None or date == "":
        day = today
    elif _DAY.fullmatch(date):
        day = _parse_day(date)
    elif period == "month" and _MONTH.fullmatch(date):
        day = _parse_day(date + "-01")
    elif period == "week" and (match := _ISO_WEEK.fullmatch(date)):
        try:
            day = dt.date.fromisocalendar(int(match[1]), int(match[2]), 1)
        except ValueError:
            raise ValueError(f"date {date!r} is not a valid ISO week") from None
    else:
        accepted = {"day": "YYYY-MM-DD", "week": "YYYY-MM-DD or YYYY-Www", "month": "YYYY-MM"}
        raise ValueError(f"date must be {accepted[period]} for period {period!r}, got {date!r}")
    if period == "week":
        return day - dt.timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    return day


def _last_day(period: str, first: dt.date) -> dt.date:
    """The period's last day (computed without stepping past the calendar's end)."""
    if period == "day":
        return first
    if period == "week":
        return min(first, dt.date.max - dt.timedelta(days=6)) + dt.timedelta(days=6)
    return first.replace(day=calendar.monthrange(first.year, first.month)[1])


def _next_first_day(period: str, first: dt.date) -> dt.date:
    if period == "day":
        return first + dt.timedelta(days=1)
    if period == "week":
        return first + dt.timedelta(weeks=1)
    return first + dt.timedelta(days=calendar.monthrange(first.year, first.month)[1])


# The days a window may cover: a day of margin at both ends of Python's calendar (years 1 to
# 9999), so the window's bounds still exist in UTC whatever the server's time zone.
FIRST_DAY, LAST_DAY = dt.date(1, 1, 2), dt.date(9999, 12, 30)


def period_window(period: str, date: str | None) -> Window:
    """The window of ``period`` (day, ISO week, month) holding ``date``; now's when None.

    ``date`` is ``YYYY-MM-DD`` (any day inside the period), or ``YYYY-MM`` for a month, or
    ``YYYY-Www`` for a week. Periods start at local midnight in ``settings.TIME_ZONE``.
    Raises ValueError with a readable message for anything else, and for a period that
    does not lie between FIRST_DAY and LAST_DAY (e.g. ``9999-12`` or the week of 0001-01-01).
    """
    if period not in PERIODS:
        raise ValueError(f"period must be one of {', '.join(PERIODS)}, got {period!r}")
    tz = server_timezone()
    first = _first_day(period, date, timezone.now().astimezone(tz).date())
    if first < FIRST_DAY or _last_day(period, first) > LAST_DAY:
        raise ValueError(f"date {date!r}: the {period} must lie between {FIRST_DAY} and {LAST_DAY}")
    last = _next_first_day(period, first)
    return Window(
        period=period,
        first_day=first,
        start=dt.datetime.combine(first, dt.time(), tzinfo=tz),
        end=dt.datetime.combine(last, dt.time(), tzinfo=tz),
        tz=tz,
    )


def _timed_turns(*, owner, window: Window) -> QuerySet:
    """The owner's turns in the window that have a model and a generation time to divide by."""
    return TurnMetricsRow.objects.filter(
        conversation__owner=owner,
        created_at__gte=window.start,
        created_at__lt=window.end,
        generation_ms__gt=0,
        copied=False,
    ).exclude(model="")


def _rate():
    # Token-weighted: the sum of tokens over the sum of times, not a mean of per-turn rates.
    return Cast(F("total_output_tokens"), FloatField()) * 1000.0 / F("total_gen_ms")


def throughput(*, owner, period: str, date: str | None) -> dict:
    """docs/protocol.md#5-http-api ``GET /metrics/throughput``: token-weighted tokens/s per model over a period.

    ``tokensPerSecond = Σ outputTokens / Σ (decodeMs ?? genTotalMs) × 1000`` over the owner's
    turns created in [start, end), fastest model first. One aggregate query.
    """
    window = period_window(period, date)
    rows = (
        _timed_turns(owner=owner, window=window)
        .values("model")
        .annotate(
            total_output_tokens=Sum("output_tokens"),
            total_gen_ms=Sum("generation_ms"),
            turns=Count("id"),
        )
        .annotate(tokens_per_second=_rate())
        .order_by("-tokens_per_second", "model")
    )
    return {
        "period": window.period,
        "date": window.label,
        "start": window.start.isoformat(),
        "end": window.end.isoformat(),
        "models": [
            {
                "model": row["model"],
                "tokensPerSecond": row["tokens_per_second"],
                "totalOutputTokens": row["total_output_tokens"],
                "totalGenMs": row["total_gen_ms"],
                "turns": row["turns"],
            }
            for row in rows
        ],
    }


def bucket_starts(window: Window) -> list[dt.datetime]:
    """The chart buckets of a window as naive local datetimes: hours of a day, else days."""
    if window.period == "day":
        return [dt.datetime.combine(window.first_day, dt.time(hour)) for hour in range(24)]
    days = (window.end.date() - window.start.date()).days
    return [
        dt.datetime.combine(window.first_day + dt.timedelta(days=n), dt.time()) for n in range(days)
    ]


def _bucket_index(window: Window, starts: list[dt.datetime]) -> Case:
    """SQL for the index of a row's bucket: a CASE over the buckets' local boundaries.

    Plain comparisons instead of Trunc*: on SQLite Trunc with a time zone is a Python
    function called per row (about 1 s per 100k rows), while this stays in the engine; the
    boundaries are exact local times, so DST days keep their 23 or 25 hours.
    """
    boundaries = [start.replace(tzinfo=window.tz) for start in starts[1:]]
    return Case(
        *(When(created_at__lt=edge, then=Value(i)) for i, edge in enumerate(boundaries)),
        default=Value(len(boundaries)),
        output_field=IntegerField(),
    )


def throughput_series(*, owner, window: Window) -> list[dict]:
    """Per model and bucket: output tokens, generation time and mean first-step TTFT.

    Rows are ``{model, bucket, totalOutputTokens, totalGenMs, tokensPerSecond, ttftMs, turns}``
    with ``bucket`` one of :func:`bucket_starts` (a naive local datetime). One query.
    """
    starts = bucket_starts(window)
    rows = (
        _timed_turns(owner=owner, window=window)
        .annotate(bucket=_bucket_index(window, starts))
        .values("model", "bucket")
        .annotate(
            total_output_tokens=Sum("output_tokens"),
            total_gen_ms=Sum("generation_ms"),
            ttft_ms=Avg("ttft_ms"),
            turns=Count("id"),
        )
        .annotate(tokens_per_second=_rate())
        .order_by("model", "bucket")
    )
    return [
        {
            "model": row["model"],
            "bucket": starts[row["bucket"]],
            "totalOutputTokens": row["total_output_tokens"],
            "totalGenMs": row["total_gen_ms"],
            "tokensPerSecond": row["tokens_per_second"],
            "ttftMs": row["ttft_ms"],
            "turns": row["turns"],
        }
        for row in rows
    ]


def turns_in_window(*, owner, window: Window) -> QuerySet:
    """The owner's turns created in the window, newest first (for the page's table); copies
    made by forks and imports are left out, as in the aggregates."""
    return (
        TurnMetricsRow.objects.filter(
            conversation__owner=owner,
            created_at__gte=window.start,
            created_at__lt=window.end,
            copied=False,
        )
        .order_by("-created_at", "-id")
        .values(
            "turn_id",
            "conversation_id",
            "model",
            "finish_reason",
            "input_tokens",
            "output_tokens",
            "output_tokens_estimated",
            "generation_ms",
            "ttft_ms",
            "duration_ms",
            "created_at",
        )
    )

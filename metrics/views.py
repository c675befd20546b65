"""The metrics page: throughput and TTFT per model over a period, and the period's turns."""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import render

from metrics.charts import line_chart
from metrics.format import format_duration, format_tokens, format_tps, tokens_per_second
from metrics.selectors import (
    PERIODS,
    Window,
    bucket_starts,
    period_window,
    throughput,
    throughput_series,
    turns_in_window,
)

PAGE_PERIOD = "week"
TURNS_PER_PAGE = 50
_BUCKET_LABELS = {"day": "%H:00", "week": "%a %d", "month": "%b %d"}


def _query(**params) -> str:
    return "?" + urlencode({k: v for k, v in params.items() if v})


def _maybe(value, formatter) -> str:
    return formatter(value) if value is not None else "–"


def _turn_row(row: dict) -> dict:
    mark = "~" if row["output_tokens_estimated"] else ""  # counted from the stream
    return {
        "conversation_id": row["conversation_id"],
        "turn_id": row["turn_id"],
        "created_at": row["created_at"],
        "model": row["model"] or "–",
        "tokens": mark + format_tokens(row["input_tokens"] + row["output_tokens"]),
        "split": f"{format_tokens(row['input_tokens'])} in / "
        f"{mark}{format_tokens(row['output_tokens'])} out",
        "tps": _maybe(tokens_per_second(row["output_tokens"], row["generation_ms"]), format_tps),
        "ttft": _maybe(row["ttft_ms"], format_duration),
        "duration": _maybe(row["duration_ms"], format_duration),
        "finish_reason": row["finish_reason"],
    }


def _charts(*, user, window: Window, models: list[str]) -> list:
    rows = throughput_series(owner=user, window=window)
    # The summary's order (fastest first) fixes each model's colour in both charts.
    tps: dict[str, dict[dt.datetime, float]] = {model: {} for model in models}
    ttft: dict[str, dict[dt.datetime, float]] = {model: {} for model in models}
    for row in rows:
        tps.setdefault(row["model"], {})[row["bucket"]] = row["tokensPerSecond"]
        if row["ttftMs"] is not None:
            ttft.setdefault(row["model"], {})[row["bucket"]] = row["ttftMs"]
    buckets = bucket_starts(window)
    fmt = _BUCKET_LABELS[window.period]

    def label(bucket: dt.datetime) -> str:
        return bucket.strftime(fmt)

    return [
        line_chart(
            title="Tokens per second",
            buckets=buckets,
            bucket_label=label,
            values=tps,
            format_value=format_tps,
        ),
        line_chart(
            title="Time to first token (mean)",
            buckets=buckets,
            bucket_label=label,
            values=ttft,
            format_value=format_duration,
        ),
    ]


def _shifted_link(window, periods: int) -> str | None:
    """The page of the period ``periods`` away; None at the ends of the supported days."""
    shifted = window.shifted(periods)
    return None if shifted is None else _query(period=window.period, date=shifted.label)


@login_required
def metrics_page(request):
    """``/metrics/?period=day|week|month&date=…&page=n`` — the caller's own turns only."""
    period = request.GET.get("period") or PAGE_PERIOD
    date = request.GET.get("date") or None
    try:
        window = period_window(period, date)
    except ValueError as error:
        context = {
            "error": str(error),
            "period": period,
            "date_value": date,
            "period_links": [(p, _query(period=p)) for p in PERIODS],
        }
        return render(request, "metrics/page.html", context, status=400)

    summary = throughput(
        owner=request.user, period=window.period, date=window.first_day.isoformat()
    )
    models = [
        {
            "model": m["model"],
            "tps": format_tps(m["tokensPerSecond"]),
            "tokens": format_tokens(m["totalOutputTokens"]),
            "gen": format_duration(m["totalGenMs"]),
            "turns": format_tokens(m["turns"]),
        }
        for m in summary["models"]
    ]
    page = Paginator(turns_in_window(owner=request.user, window=window), TURNS_PER_PAGE).get_page(
        request.GET.get("page")
    )
    here = window.label
    context = {
        "window": window,
        "period": window.period,
        "date_value": window.first_day.isoformat(),
        "end_day": window.end.date() - dt.timedelta(days=1),
        "period_links": [(p, _query(period=p, date=window.first_day.isoformat())) for p in PERIODS],
        "previous_link": _shifted_link(window, -1),
        "next_link": _shifted_link(window, 1),
        "models": models,
        "charts": _charts(
            user=request.user, window=window, models=[m["model"] for m in summary["models"]]
        ),
        "page": page,
        "turn_count": format_tokens(page.paginator.count),
        "turns": [_turn_row(row) for row in page.object_list],
        "page_link_base": _query(period=window.period, date=here),
    }
    return render(request, "metrics/page.html", context)

"""Server-side line charts: geometry for an inline SVG template (no JS, no chart library)."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass, field

# Colour-blind-friendly (Okabe–Ito), cycled when there are more models than colours.
PALETTE = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000")
WIDTH, HEIGHT = 560, 240
LEFT, RIGHT, TOP, BOTTOM = 100, 12, 12, 30  # room for "12,345 tok/s"
MAX_X_LABELS = 7


@dataclass
class Point:
    x: float
    y: float
    tooltip: str


@dataclass
class Series:
    name: str
    color: str
    # One SVG "points" string per run of consecutive buckets, so gaps stay gaps.
    segments: list[str] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)


@dataclass
class Tick:
    position: float
    label: str


@dataclass
class LineChart:
    title: str
    series: list[Series]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    right: int = WIDTH - RIGHT
    top: int = TOP
    bottom: int = HEIGHT - BOTTOM

    @property
    def empty(self) -> bool:
        return not any(s.points for s in self.series)


def _nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 × 10^k at or above ``value`` (a readable axis top)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


def line_chart(
    *,
    title: str,
    buckets: list[dt.datetime],
    bucket_label: Callable[[dt.datetime], str],
    values: dict[str, dict[dt.datetime, float]],
    format_value: Callable[[float], str],
) -> LineChart:
    """Lay out one line per series over ``buckets``; missing buckets break the line.

    ``values`` maps a series name to ``{bucket: value}``; its key order fixes the colours, so
    charts built from the same order colour each model the same way.
    """
    plot_width = WIDTH - LEFT - RIGHT
    plot_height = HEIGHT - TOP - BOTTOM
    slot = plot_width / max(len(buckets), 1)
    x_of = {bucket: LEFT + (i + 0.5) * slot for i, bucket in enumerate(buckets)}
    top_value = _nice_ceiling(max((v for s in values.values() for v in s.values()), default=0))

    def y_of(value: float) -> float:
        return round(TOP + plot_height * (1 - value / top_value), 1)

    series = []
    for index, (name, by_bucket) in enumerate(values.items()):
        line = Series(name=name, color=PALETTE[index % len(PALETTE)])
        run: list[str] = []
        for bucket in buckets:
            if bucket not in by_bucket:
                if run:
                    line.segments.append(" ".join(run))
                run = []
                continue
            value = by_bucket[bucket]
            x, y = round(x_of[bucket], 1), y_of(value)
            run.append(f"{x},{y}")
            tooltip = f"{name} · {bucket_label(bucket)} · {format_value(value)}"
            line.points.append(Point(x=x, y=y, tooltip=tooltip))
        if run:
            line.segments.append(" ".join(run))
        series.append(line)

    every = max(1, math.ceil(len(buckets) / MAX_X_LABELS))
    x_ticks = [Tick(position=round(x_of[b], 1), label=bucket_label(b)) for b in buckets[::every]]
    y_ticks = [
        Tick(position=y_of(top_value * fraction), label=format_value(top_value * fraction))
        for fraction in (0, 0.5, 1)
    ]
    return LineChart(title=title, series=series, x_ticks=x_ticks, y_ticks=y_ticks)

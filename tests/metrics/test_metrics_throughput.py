"""throughput(): token-weighted tokens/s per model over day / ISO week / month windows."""

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from django.test import override_settings

from metrics.selectors import period_window, throughput
from tests.metrics.conftest import turn_metrics

pytestmark = pytest.mark.django_db
UTC = dt.UTC


def _at(*args, tz=UTC) -> dt.datetime:
    return dt.datetime(*args, tzinfo=tz)


def test_token_weighted_not_a_mean_of_rates(sealed, user):
    # 100 tok in 1 s (100 tok/s) and 900 tok in 9 s (100 tok/s) → 100; a mean of rates of
    # 10 tok/s and 100 tok/s would be 55. Here: 100 tok / 10 s and 900 tok / 1 s.
    day = _at(2026, 3, 10, 12)
    sealed(turn_metrics(output_tokens=100, decode_ms=10_000), at=day)
    sealed(turn_metrics(output_tokens=900, decode_ms=1_000), at=day)
    result = throughput(owner=user, period="day", date="2026-03-10")
    assert result["models"] == [
        {
            "model": "local/qwen",
            "tokensPerSecond": pytest.approx(1000 / 11_000 * 1000),
            "totalOutputTokens": 1000,
            "totalGenMs": pytest.approx(11_000),
            "turns": 2,
        }
    ]


def test_models_sorted_fastest_first_and_gen_total_when_no_decode(sealed, user):
    day = _at(2026, 3, 10, 12)
    sealed(turn_metrics(model="a/slow", output_tokens=10, decode_ms=1000), at=day)
    sealed(turn_metrics(model="b/fast", output_tokens=500, decode_ms=1000), at=day)
    no_decode = turn_metrics(model="c/mid", output_tokens=60)
    no_decode["steps"] = [{"usage": no_decode["usage"], "genTotalMs": 2000.0}]
    sealed(no_decode, at=day)
    models = throughput(owner=user, period="day", date="2026-03-10")["models"]
    assert [(m["model"], m["tokensPerSecond"]) for m in models] == [
        ("b/fast", pytest.approx(500)),
        ("c/mid", pytest.approx(30)),
        ("a/slow", pytest.approx(10)),
    ]


def test_only_the_owners_timed_turns_count(sealed, user, other_user):
    day = _at(2026, 3, 10, 12)
    sealed(turn_metrics(output_tokens=100), at=day)
    sealed(turn_metrics(output_tokens=999), at=day, owner=other_user, conversation_id="theirs")
    untimed = turn_metrics()
    untimed["steps"] = []
    sealed(untimed, at=day)
    [row] = throughput(owner=user, period="day", date="2026-03-10")["models"]
    assert (row["totalOutputTokens"], row["turns"]) == (100, 1)
    assert (
        throughput(owner=other_user, period="day", date="2026-03-10")["models"][0][
            "totalOutputTokens"
        ]
        == 999
    )


def _turns(user, period, date):
    return sum(m["turns"] for m in throughput(owner=user, period=period, date=date)["models"])


def test_month_window_is_half_open(sealed, user):
    sealed(turn_metrics(), at=_at(2026, 1, 31, 23, 59, 59))
    sealed(turn_metrics(), at=_at(2026, 2, 1, 0, 0, 0))
    sealed(turn_metrics(), at=_at(2026, 2, 28, 23, 59, 59))
    sealed(turn_metrics(), at=_at(2026, 3, 1, 0, 0, 0))
    assert _turns(user, "month", "2026-02") == 2
    assert _turns(user, "month", "2026-02-14") == 2
    assert _turns(user, "month", "2026-01") == 1
    result = throughput(owner=user, period="month", date="2026-02-14")
    assert (result["date"], result["start"], result["end"]) == (
        "2026-02",
        "2026-02-01T00:00:00+00:00",
        "2026-03-01T00:00:00+00:00",
    )


def test_iso_week_crossing_a_year(sealed, user):
    # ISO week 2026-W01 runs Mon 2025-12-29 … Sun 2026-01-04.
    sealed(turn_metrics(), at=_at(2025, 12, 28, 23, 59))  # Sunday of 2025-W52
    sealed(turn_metrics(), at=_at(2025, 12, 29, 0, 0))
    sealed(turn_metrics(), at=_at(2026, 1, 4, 23, 59))
    sealed(turn_metrics(), at=_at(2026, 1, 5, 0, 0))  # Monday of 2026-W02
    for date in ("2026-01-01", "2025-12-29", "2026-01-04", "2026-W01"):
        assert _turns(user, "week", date) == 2, date
        assert throughput(owner=user, period="week", date=date)["date"] == "2025-12-29"


@override_settings(TIME_ZONE="Europe/Berlin")
def test_days_start_at_local_midnight(sealed, user):
    sealed(turn_metrics(), at=_at(2026, 3, 9, 23, 30))  # 00:30 on the 10th in Berlin
    sealed(turn_metrics(), at=_at(2026, 3, 10, 22, 59))  # 23:59 on the 10th
    sealed(turn_metrics(), at=_at(2026, 3, 10, 23, 0))  # 00:00 on the 11th
    assert _turns(user, "day", "2026-03-10") == 2
    assert _turns(user, "day", "2026-03-09") == 0
    assert _turns(user, "day", "2026-03-11") == 1
    result = throughput(owner=user, period="day", date="2026-03-10")
    assert (result["start"], result["end"]) == (
        "2026-03-10T00:00:00+01:00",
        "2026-03-11T00:00:00+01:00",
    )


@override_settings(TIME_ZONE="Europe/Berlin")
def test_month_across_a_dst_change_uses_both_offsets():
    window = period_window("month", "2026-03")
    assert window.start.isoformat() == "2026-03-01T00:00:00+01:00"
    assert window.end.isoformat() == "2026-04-01T00:00:00+02:00"


@override_settings(TIME_ZONE="Pacific/Kiritimati")
def test_default_is_the_current_local_period(user):
    today = dt.datetime.now(ZoneInfo("Pacific/Kiritimati")).date()
    assert throughput(owner=user, period="day", date=None)["date"] == today.isoformat()
    assert throughput(owner=user, period="month", date=None)["date"] == today.strftime("%Y-%m")


@pytest.mark.parametrize(
    ("period", "date", "message"),
    [
        ("year", None, "period must be one of day, week, month"),
        ("day", "2026-03", "date must be YYYY-MM-DD for period 'day'"),
        ("day", "2026-02-30", "not a valid YYYY-MM-DD day"),
        ("day", "10/03/2026", "date must be YYYY-MM-DD"),
        ("month", "2026-13", "not a valid YYYY-MM-DD day"),
        ("week", "2026-W54", "not a valid ISO week"),
        ("month", "2026-W10", "date must be YYYY-MM"),
    ],
)
def test_invalid_period_or_date(user, period, date, message):
    with pytest.raises(ValueError, match=message):
        throughput(owner=user, period=period, date=date)

"""docs/protocol.md#8-web-app-socket formatting rules (metrics/format.py)."""

import pytest

from chat.runtime import StepMetrics, TurnMetrics, Usage
from metrics.format import (
    format_duration,
    format_tokens,
    format_tps,
    step_row,
    step_tps,
    tokens_per_second,
    turn_row,
    turn_tps,
    turn_ttft_ms,
)


@pytest.mark.parametrize(
    ("count", "text"), [(0, "0"), (999, "999"), (1234, "1,234"), (1234567, "1,234,567")]
)
def test_tokens_have_thousands_separators(count, text):
    assert format_tokens(count) == text


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (0, "0ms"),
        (2.5, "3ms"),
        (850, "850ms"),
        (999.4, "999ms"),
        (999.9, "1.0s"),  # rounds to 1000 ms, so it is shown in seconds
        (1000, "1.0s"),
        (1234, "1.2s"),
        (1250, "1.3s"),
        (61_000, "61.0s"),
    ],
)
def test_durations_are_ms_below_one_second_else_one_decimal_seconds(ms, text):
    assert format_duration(ms) == text


@pytest.mark.parametrize(
    ("tps", "text"),
    [
        (0, "0.0 tok/s"),
        (7.5, "7.5 tok/s"),
        (7.46, "7.5 tok/s"),
        (9.94, "9.9 tok/s"),
        (9.95, "10 tok/s"),  # rounds to 10.0: no longer below 10
        (10, "10 tok/s"),
        (42.4, "42 tok/s"),
        (42.5, "43 tok/s"),
        (1234.2, "1234 tok/s"),
    ],
)
def test_tps_one_decimal_below_ten_else_rounded(tps, text):
    assert format_tps(tps) == text


def test_tps_divides_by_decode_time_else_gen_total():
    assert step_tps(StepMetrics("t#0", Usage(1, 30), decode_ms=2000.0)) == 15
    assert step_tps(StepMetrics("t#0", Usage(1, 30), gen_total_ms=3000.0)) == 10
    both = StepMetrics("t#0", Usage(1, 30), decode_ms=1000, gen_total_ms=3000)
    assert step_tps(both) == 30
    assert tokens_per_second(30, None) is None
    assert tokens_per_second(30, 0) is None


def test_step_row_with_every_part():
    step = StepMetrics(
        "turn-1-abcdef#0",
        Usage(1200, 75),
        ttft_ms=320.0,
        decode_ms=10_000.0,
        gen_total_ms=10_320.0,
    )
    assert step_row(step, 1) == {
        "text": "step 1 · 1,275 tok · 7.5 tok/s · 10.3s",
        "title": "TTFT 320ms",
    }


def test_step_row_without_timing_leaves_the_parts_out():
    step = StepMetrics("t#1", Usage(10, 5))
    assert step_row(step, 2) == {"text": "step 2 · 15 tok", "title": ""}


def test_step_row_without_first_token_uses_gen_total():
    step = StepMetrics("t#0", Usage(0, 84), gen_total_ms=2000)
    assert step_row(step, 1)["text"] == "step 1 · 84 tok · 42 tok/s · 2.0s"


def _turn(**extra) -> TurnMetrics:
    return TurnMetrics(
        **{
            "turn_id": "turn-1-abcdef",
            "model": "local/qwen",
            "usage": Usage(3000, 420),
            "duration_ms": 12_345.0,
            "finish_reason": "stop",
            "steps": (
                StepMetrics("s#0", Usage(1000, 20), ttft_ms=850.0, gen_total_ms=1000.0),
                StepMetrics(
                    "s#1", Usage(2000, 400), ttft_ms=100.0, decode_ms=9000.0, gen_total_ms=9100.0
                ),
            ),
            **extra,
        }
    )


def test_turn_tps_is_token_weighted_over_the_steps():
    # 420 tokens over 1000 ms (step 0 has no decode time) + 9000 ms of decode.
    assert turn_tps(_turn()) == pytest.approx(42.0)


def test_turn_row():
    assert turn_row(_turn(), 3) == {
        "text": "turn 3 · 3,420 tok (3,000 in / 420 out) · 42 tok/s · 12.3s",
        "title": "local/qwen · stop · TTFT 850ms",
    }


def test_turn_row_shows_cache_reads_when_there_are_some():
    turn = _turn(usage=Usage(3000, 420, cache_read_tokens=2048))
    assert turn_row(turn, 1)["text"].startswith(
        "turn 1 · 3,420 tok (3,000 in / 420 out / 2,048 cache) · "
    )
    no_cache = _turn(usage=Usage(3000, 420, cache_read_tokens=0))
    assert "cache" not in turn_row(no_cache, 1)["text"]


def test_turn_row_of_a_turn_that_never_streamed():
    turn = TurnMetrics("t", "error")
    assert turn_row(turn, 1) == {"text": "turn 1 · 0 tok (0 in / 0 out)", "title": "error"}


def test_the_turns_ttft_is_the_first_step_that_streamed_a_token():
    tools_only = StepMetrics("s#0", Usage(10, 5), gen_total_ms=300.0)
    streamed = StepMetrics("s#1", Usage(20, 8), ttft_ms=40.0, gen_total_ms=90.0)
    assert turn_ttft_ms(_turn(steps=(tools_only, streamed))) == 40.0
    assert turn_ttft_ms(_turn(steps=(tools_only,))) is None

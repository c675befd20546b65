"""The CLI's metrics line is the server's turn row (metrics/format.py), character for character."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from chat.runtime import TurnMetrics
from dispatch_cli.metrics import turn_line
from metrics.format import turn_row

tokens = st.integers(min_value=0, max_value=10**9)
# Clock readings in ms: zero, or at least a microsecond (both formatters overflow Decimal's
# precision on the absurd tokens/s of subnormal durations).
ms = st.none() | st.just(0.0) | st.floats(min_value=0.001, max_value=10**7)


@st.composite
def turns(draw) -> dict:
    steps = [
        {
            key: value
            for key, value in (
                ("decodeMs", draw(ms)),
                ("genTotalMs", draw(ms)),
                ("ttftMs", draw(ms)),
            )
            if value is not None
        }
        | {"stepId": f"turn-1#{index}"}
        | {"usage": {"inputTokens": draw(tokens), "outputTokens": draw(tokens)}}
        for index in range(draw(st.integers(min_value=0, max_value=4)))
    ]
    usage = {"inputTokens": draw(tokens), "outputTokens": draw(tokens)}
    if draw(st.booleans()):
        usage["estimated"] = True  # counted from the stream (a stopped turn)
    cache = draw(st.none() | tokens)
    if cache is not None:
        usage["cacheReadTokens"] = cache
    turn = {"turnId": "turn-1", "usage": usage, "steps": steps, "finishReason": "stop"}
    duration = draw(ms)
    if duration is not None:
        turn["durationMs"] = duration
    return turn


@given(turns(), st.integers(min_value=1, max_value=10_000))
def test_the_cli_line_is_the_servers_turn_row(turn, number):
    assert turn_line(turn, number) == turn_row(TurnMetrics.from_wire(turn), number)["text"]


def test_the_example_of_the_format():
    turn = {
        "usage": {"inputTokens": 1000, "outputTokens": 234},
        "steps": [{"usage": {"inputTokens": 1000, "outputTokens": 234}, "decodeMs": 5571.4}],
        "durationMs": 1234,
    }
    assert turn_line(turn, 1) == "turn 1 · 1,234 tok (1,000 in / 234 out) · 42 tok/s · 1.2s"

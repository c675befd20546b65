"""The typed wire shapes (docs/protocol.md#2-chunks-and-the-log): Usage, StepMetrics and TurnMetrics to and from camelCase."""

from __future__ import annotations

import json

from chat.runtime import StepMetrics, TurnMetrics, Usage

FULL_WIRE = {
    "turnId": "turn-1-abcdef",
    "model": "cred/org/model",
    "usage": {
        "inputTokens": 300,
        "outputTokens": 42,
        "cacheReadTokens": 200,
        "cacheWriteTokens": 7,
    },
    "durationMs": 1234.5,
    "contextSize": 330,
    "finishReason": "stop",
    "steps": [
        {"stepId": "turn-1-abcdef#0", "usage": {"inputTokens": 100, "outputTokens": 12}},
        {
            "stepId": "turn-1-abcdef#1",
            "usage": {"inputTokens": 200, "outputTokens": 30, "cacheReadTokens": 200},
            "ttftMs": 12.5,
            "decodeMs": 300.0,
            "genTotalMs": 312.5,
        },
    ],
}


def test_a_full_turn_round_trips_with_its_keys_in_wire_order():
    metrics = TurnMetrics.from_wire(FULL_WIRE)

    assert metrics.steps[1] == StepMetrics(
        "turn-1-abcdef#1", Usage(200, 30, 200), ttft_ms=12.5, decode_ms=300.0, gen_total_ms=312.5
    )
    # Byte-identical JSON, not only an equal dict: key order is part of the API's bytes.
    assert json.dumps(metrics.to_wire()) == json.dumps(FULL_WIRE)


def test_absent_parts_are_left_out_not_null():
    wire = TurnMetrics("turn-2-abcdef", "interrupted").to_wire()

    assert wire == {
        "turnId": "turn-2-abcdef",
        "usage": {"inputTokens": 0, "outputTokens": 0},
        "finishReason": "interrupted",
        "steps": [],
    }
    assert StepMetrics("t#0").to_wire() == {
        "stepId": "t#0",
        "usage": {"inputTokens": 0, "outputTokens": 0},
    }


def test_a_step_complete_event_reads_as_a_step_without_usage():
    event = {
        "type": "step-complete",
        "conversationId": "c",
        "turnId": "t",
        "stepId": "t#0",
        "genTotalMs": 80.0,
    }

    step = StepMetrics.from_wire(event)

    assert step == StepMetrics("t#0", Usage(), gen_total_ms=80.0)
    assert step.timing_wire() == {"genTotalMs": 80.0}

"""chat.wire.dumps: compact JSON from orjson, and from the standard library for what it refuses."""

from __future__ import annotations

import json

from chat import wire


def test_frames_are_compact_json_that_reads_back_equal():
    frame = {"type": "chat.delta", "event": {"type": "text-delta", "delta": "héllo · 🌊", "n": 1.5}}
    text = wire.dumps(frame)
    assert json.loads(text) == frame
    assert ", " not in text and ": " not in text
    assert "héllo · 🌊" in text  # not escaped


def test_what_orjson_refuses_is_encoded_by_the_standard_library():
    huge = {"value": 2**70}
    assert json.loads(wire.dumps(huge)) == huge
    lone = {"text": "a\ud800b"}  # a lone surrogate: orjson refuses it; escaped instead
    text = wire.dumps(lone)
    assert "\\ud800" in text
    text.encode("utf-8")  # fit for a socket
    assert json.loads(text) == lone


def test_an_ndjson_line_is_one_compact_json_value_and_a_newline():
    event = {"type": "text-delta", "delta": "héllo\nnext · 🌊", "n": 2}
    line = wire.line(event)
    assert line.endswith(b"\n") and line.count(b"\n") == 1  # the text's newline is escaped
    assert json.loads(line) == event
    assert line.decode() == wire.dumps(event) + "\n"


def test_an_ndjson_line_of_what_orjson_refuses_is_still_one_line():
    for value in ({"value": 2**70}, {"text": "a\ud800b"}):
        line = wire.line(value)
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        assert json.loads(line) == value

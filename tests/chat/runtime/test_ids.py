"""Turn and step ids (docs/protocol.md#2-chunks-and-the-log)."""

from __future__ import annotations

import re
import time

from chat.runtime import new_turn_id, step_id

TURN_ID = re.compile(r"^turn-(\d+)-([0-9a-z]{6})$")


def test_turn_id_format_with_a_given_time():
    turn_id = new_turn_id(1_700_000_000_123)

    match = TURN_ID.match(turn_id)
    assert match is not None, turn_id
    assert match.group(1) == "1700000000123"


def test_turn_id_uses_the_current_epoch_milliseconds():
    before = int(time.time() * 1000)
    turn_id = new_turn_id()
    after = int(time.time() * 1000)

    match = TURN_ID.match(turn_id)
    assert match is not None, turn_id
    assert before <= int(match.group(1)) <= after


def test_turn_id_suffixes_are_random():
    suffixes = {new_turn_id(1).rsplit("-", 1)[1] for _ in range(50)}

    assert len(suffixes) == 50  # 36**6 values: a repeat in 50 draws is ~1e-6 likely


def test_step_id_is_turn_id_hash_index():
    assert step_id("turn-1700000000123-a1b2c3", 0) == "turn-1700000000123-a1b2c3#0"
    assert step_id("turn-1700000000123-a1b2c3", 12) == "turn-1700000000123-a1b2c3#12"

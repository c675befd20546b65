"""Turn and step ids (docs/protocol.md#2-chunks-and-the-log). Clients treat them as opaque."""

import secrets
import string
import time

_BASE36 = string.digits + string.ascii_lowercase
_SUFFIX_LENGTH = 6
_SUFFIXES = len(_BASE36) ** _SUFFIX_LENGTH


def new_turn_id(now_ms: int | None = None) -> str:
    stamp = int(time.time() * 1000) if now_ms is None else now_ms
    # One draw from the OS (``secrets.choice`` per character would read it six times).
    draw, suffix = secrets.randbelow(_SUFFIXES), []
    for _ in range(_SUFFIX_LENGTH):
        draw, digit = divmod(draw, 36)
        suffix.append(_BASE36[digit])
    return f"turn-{stamp}-{''.join(suffix)}"


def step_id(turn_id: str, index: int) -> str:
    return f"{turn_id}#{index}"

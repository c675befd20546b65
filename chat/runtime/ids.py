"""Turn and step ids (docs/protocol.md#2-chunks-and-the-log). Clients treat them as opaque."""

import secrets
import string
import time

_BASE36 = string.digits + string.ascii_lowercase


def new_turn_id(now_ms: int | None = None) -> str:
    stamp = int(time.time() * 1000) if now_ms is None else now_ms
    suffix = "".join(secrets.choice(_BASE36) for _ in range(6))
    return f"turn-{stamp}-{suffix}"


def step_id(turn_id: str, index: int) -> str:
    return f"{turn_id}#{index}"

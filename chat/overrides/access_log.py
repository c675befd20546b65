"""Daphne's access log without secrets: a ``token`` query parameter's value is redacted.

Daphne's CLI (daphne 4.2) builds its access log with the module-level name
``daphne.cli.AccessLogGenerator``, and an HTTP line carries the whole request URI, query
string included. API clients may authenticate with ``?token=`` (docs/security.md), so the
plain log would hold working credentials. ``install()`` points that name at a subclass that
redacts the value before the line is written; WebSocket lines carry the path only, but go
through the same redaction.
"""

from __future__ import annotations

import re
from typing import Any

import daphne.cli
from daphne.access import AccessLogGenerator

_TOKEN = re.compile(r"([?&;]token=)[^&;#\s]*", re.IGNORECASE)
REDACTED = "[redacted]"


def redact(path: str) -> str:
    """``path`` with every ``token`` query parameter's value replaced by ``[redacted]``."""
    return _TOKEN.sub(lambda m: m.group(1) + REDACTED, path)


class RedactingAccessLog(AccessLogGenerator):
    def __call__(self, protocol: str, action: str, details: dict[str, Any]) -> None:
        if isinstance(details.get("path"), str):
            details = {**details, "path": redact(details["path"])}
        super().__call__(protocol, action, details)


def install() -> None:
    """Make Daphne's command line write its access log through ``RedactingAccessLog``."""
    daphne.cli.AccessLogGenerator = RedactingAccessLog

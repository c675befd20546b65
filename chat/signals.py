"""What the server announces in-process for other parts to hook (metrics, logs, audits).

``compaction_finished`` is the one place a compaction is reported: sent once for every
compaction that ended (docs/protocol.md#24-compaction), automatic or manual, whether it wrote
a summary or failed, from the worker that ran it. Receivers get keyword arguments:

- ``model``: the ``<credential>/<model>`` that was asked for the summary;
- ``trigger``: ``"auto"`` (before a provider call, at the threshold) or ``"manual"``;
- ``ok``: True when the summary was written to the log;
- ``code``: why it failed (``empty-summary``, ``aborted``, ``too-short``, ``too-large``, a
  provider error code), None when ok;
- ``usage``: the summary call's Usage wire dict, None when the model was not called.

Receivers run in the event loop of the turn and must not block (nor raise: an exception is
logged and the turn goes on).
"""

from __future__ import annotations

import logging

from django.dispatch import Signal

log = logging.getLogger(__name__)

compaction_finished = Signal()

# The events that end a compaction (chat.runtime emits exactly one per compaction).
COMPACTION_ENDS = ("compaction-done", "compaction-failed")


def compaction_report(*, model: str, event: dict) -> None:
    """Send ``compaction_finished`` for a compaction's end event."""
    results = compaction_finished.send_robust(
        sender=compaction_report,
        model=model,
        trigger=event.get("trigger", "auto"),
        ok=event["type"] == "compaction-done",
        code=event.get("code"),
        usage=event.get("usage"),
    )
    for receiver, result in results:
        if isinstance(result, Exception):
            log.error("compaction_finished receiver %r failed", receiver, exc_info=result)

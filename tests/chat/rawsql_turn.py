"""Run by tests/chat/test_rawsql.py in a process of its own (``python -m tests.chat.rawsql_turn ID``)
against the database its environment names: one turn written by the services' plain
statements (chat.rawsql) — begin, a user message and a step with a tool call, the seal and its
metrics, a queued message drained — then everything read back through the ORM, as JSON."""

from __future__ import annotations

import datetime
import json
import os
import sys

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dispatch_site.settings")
django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.db import transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from chat import selectors  # noqa: E402
from chat.models import Chunk, Conversation, SearchEntry, Turn  # noqa: E402
from chat.runtime import Message, StepMetrics, TurnMetrics, Usage  # noqa: E402
from chat.services import _log  # noqa: E402
from metrics.models import StepMetrics as StepRow  # noqa: E402
from metrics.models import TurnMetrics as TurnRow  # noqa: E402


def recent(value: datetime.datetime | None) -> bool:
    return value is not None and abs((timezone.now() - value).total_seconds()) < 60


def main(cid: str) -> None:
    user = User.objects.create_user(cid)
    turn_id = f"{cid}-t"
    with transaction.atomic():  # as a turn's opening transaction: nothing read twice
        conversation = _log.conversation_create(user=user, conversation_id=cid, title="Raw")
        counters = _log.turn_begin(
            conversation_id=cid, turn_id=turn_id, model="m/x", worker="w", created=conversation
        )
        _log.chunks_append(
            conversation_id=cid,
            messages=[Message("user", [{"type": "text", "text": "hi\u00e9 \u2603"}])],
            turn_id=turn_id,
            counters=counters,
        )
    stored = _log.chunks_append(
        conversation_id=cid,
        messages=[
            Message("assistant", [
                {"type": "text", "text": "nul\0here", "stepId": f"{turn_id}#0"},
                {"type": "tool-call", "id": "c1", "name": "read", "input": {"path": "a"},
                 "stepId": f"{turn_id}#0"},
            ]),
            Message("tool", []),  # no chunks: no ordinal, no row
        ],
        turn_id=turn_id,
    )  # fmt: skip
    _log.queue_push(conversation_id=cid, text="later")
    metrics = TurnMetrics(
        turn_id=turn_id, finish_reason="stop", usage=Usage(12, 7, cache_read_tokens=3),
        model="m/x", duration_ms=812.5, context_size=19,
        steps=(StepMetrics(step_id=f"{turn_id}#0", usage=Usage(12, 7), ttft_ms=40.0, decode_ms=300.0,
                           gen_total_ms=340.0),),
    )  # fmt: skip
    with transaction.atomic():
        sealed = _log.turn_seal(turn_id=turn_id, metrics=metrics)
        drained = _log.queue_drain(conversation_id=cid)
    again = _log.turn_seal(turn_id=turn_id, metrics=metrics)  # sealed already: nothing written
    turn = Turn.objects.get(pk=turn_id)
    turn_row = TurnRow.objects.get(turn_id=turn_id)
    step_row = StepRow.objects.get(turn_metrics=turn_row)
    conversation.refresh_from_db()
    fetched = selectors.conversation_for_user(user=user, conversation_id=cid)  # chat.rawsql.get
    out = {
        "owner": user.pk,
        "fetched": [
            fetched.pk,
            fetched.title,
            fetched.owner_id == user.pk,
            recent(fetched.created_at),
            recent(fetched.last_activity_at),
            fetched.archived_at,
            fetched.system_prompt_template,
        ],  # fmt: skip
        "stored": stored,
        "sealed": list(sealed),
        "again": list(again),
        "drained": drained,
        "conversation": {
            "lastSeq": conversation.last_seq,
            "lastOrdinal": conversation.last_message_ordinal,
            "lastTurnNumber": conversation.last_turn_number,
            "status": conversation.status,
            "model": conversation.model,
        },
        "chunks": [
            [
                c.seq,
                c.message,
                c.role,
                c.type,
                c.payload,
                c.turn_id,
                c.step_id,
                recent(c.created_at),
            ]
            for c in Chunk.objects.filter(conversation_id=cid).order_by("seq")
        ],  # fmt: skip
        "search": sorted(
            [e.seq, e.role, e.text, e.owner_id == user.pk]
            for e in SearchEntry.objects.filter(conversation_id=cid)
        ),
        "turn": [
            turn.status,
            turn.kind,
            turn.number,
            turn.model,
            turn.worker,
            turn.finish_reason,
            recent(turn.started_at),
            recent(turn.ended_at),
            recent(turn.heartbeat_at),
        ],  # fmt: skip
        "turnMetrics": [
            turn_row.conversation_id,
            turn_row.model,
            turn_row.finish_reason,
            turn_row.input_tokens,
            turn_row.output_tokens,
            turn_row.output_tokens_estimated,
            turn_row.cache_read_tokens,
            turn_row.cache_write_tokens,
            turn_row.duration_ms,
            turn_row.context_size,
            turn_row.gen_total_ms,
            turn_row.decode_ms,
            turn_row.copied,
            recent(turn_row.created_at),
        ],  # fmt: skip
        "stepMetrics": [
            step_row.step_id,
            step_row.index,
            step_row.kind,
            step_row.input_tokens,
            step_row.output_tokens,
            step_row.ttft_ms,
            step_row.decode_ms,
            step_row.gen_total_ms,
        ],  # fmt: skip
    }
    # A second turn: its counters as turn_begin read (and, on PostgreSQL, locked) them.
    with transaction.atomic():
        counters = _log.turn_begin(
            conversation_id=cid, turn_id=f"{cid}-t2", model="m/x", worker="w"
        )
        second = _log.chunks_append(
            conversation_id=cid,
            messages=[Message("user", [{"type": "text", "text": "again"}])],
            turn_id=f"{cid}-t2",
            counters=counters,
        )
    conversation.refresh_from_db()
    # Its id taken: nothing inserted, no error, the transaction still usable (PostgreSQL).
    with transaction.atomic():
        taken = _log.conversation_create(user=user, conversation_id=cid, title="Again")
        title = Conversation.objects.get(pk=cid).title
    out["taken"] = [taken, title]
    out["second"] = [list(counters), second, conversation.last_seq, conversation.last_turn_number]
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])

"""The one business layer: every write to a conversation goes through here.

Views, the JSON API, WebSocket consumers and the admin call these functions; none of them
writes models directly. Functions are keyword-only and named ``<noun>_<verb>``.

- ``log``: synchronous writes — conversations, the append-only chunk log, turn rows, queue
- ``turns``: starting, stopping and closing turns, queueing messages (async)
- ``recovery``: sealing turns whose worker died; heartbeats
- ``tabs``: the user's open conversations
"""

from chat.services.errors import Conflict, InvalidInput
from chat.services.log import (
    chunks_append,
    conversation_ensure,
    conversation_set_status,
    conversation_update,
    default_title,
    queue_add,
    queue_cancel,
    queue_drain,
    turn_begin,
    turn_seal,
)
from chat.services.recovery import stale_before, turns_heartbeat, turns_recover
from chat.services.tabs import (
    tab_activate,
    tab_close,
    tab_list,
    tab_open,
    tab_rename,
    tabs_group_for,
)
from chat.services.turns import (
    TurnRequest,
    conversation_close,
    conversation_cwd,
    queue_enqueue,
    queue_remove,
    running_turn_row,
    status_publish,
    turn_start,
    turn_stop,
    worker_start,
    workspace_root,
)

__all__ = [
    "Conflict",
    "InvalidInput",
    "TurnRequest",
    "chunks_append",
    "conversation_close",
    "conversation_cwd",
    "conversation_ensure",
    "conversation_set_status",
    "conversation_update",
    "default_title",
    "queue_add",
    "queue_cancel",
    "queue_drain",
    "queue_enqueue",
    "queue_remove",
    "running_turn_row",
    "stale_before",
    "status_publish",
    "tab_activate",
    "tab_close",
    "tab_list",
    "tab_open",
    "tab_rename",
    "tabs_group_for",
    "turn_begin",
    "turn_seal",
    "turn_start",
    "turn_stop",
    "turns_heartbeat",
    "turns_recover",
    "worker_start",
    "workspace_root",
]

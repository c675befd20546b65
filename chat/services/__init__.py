"""The one business layer: one async function per user intent.

Every transport — the JSON API, the JSON WebSocket, the web app's socket, the web views and the
admin — calls these and only maps their result, or their chat.errors.DomainError, to its
protocol. Each intent checks access and input (chat.services.inputs), writes in one
transaction, and publishes its events once that transaction has committed
(chat.services.events). The synchronous write primitives (``_log``) are private to this
package. Functions are keyword-only and named ``<noun>_<verb>``.

- ``turns``: starting and stopping turns (a turn runs as a task of this process)
- ``queue``: queueing texts for a running turn, cancelling them
- ``conversations``: title, model, reasoning effort, cwd, open/close, tab order
- ``workspace``: each user's workspace and a conversation's directory in it
- ``recovery``: sealing turns whose worker died; heartbeats
- ``compaction``: compacting a conversation on request, its compaction threshold
- ``health``: whether this worker can serve (``GET /health``)
- ``prompts``: a conversation's system prompt, the user's presets
- ``forks``: forking a conversation (edit, regenerate), importing one
- ``lifecycle``: archive, restore, delete
- ``preferences``: the user's web app settings (theme)
- ``attachments``: uploading, removing and sending attachments; purging a conversation's
- ``vision``: the images of a conversation as the turn's model can take them
"""

from chat.services.attachments import attachment_delete, attachment_upload, attachments_purge
from chat.services.compaction import (
    compaction_result,
    conversation_compact,
    conversation_set_compaction,
)
from chat.services.conversations import (
    conversation_close,
    conversation_open,
    conversation_rename,
    conversation_set_cwd,
    conversation_set_model,
    conversation_set_reasoning_effort,
    tabs_reorder,
)
from chat.services.forks import conversation_fork, conversation_import, conversation_regenerate
from chat.services.health import health_check
from chat.services.lifecycle import (
    conversation_archive,
    conversation_delete,
    conversation_restore,
    deletions_finish,
)
from chat.services.preferences import preferences_set_theme
from chat.services.prompts import conversation_set_system_prompt, preset_delete, preset_save
from chat.services.queue import queue_add, queue_cancel
from chat.services.recovery import stale_before, turns_recover
from chat.services.turns import (
    compact_threshold,
    resolve_model,
    turn_continue,
    turn_retry,
    turn_start,
    turn_stop,
    worker_start,
)
from chat.services.workspace import user_root, workspace_root

__all__ = [
    "attachment_delete",
    "attachment_upload",
    "attachments_purge",
    "compact_threshold",
    "compaction_result",
    "conversation_archive",
    "conversation_close",
    "conversation_compact",
    "conversation_delete",
    "conversation_fork",
    "conversation_import",
    "conversation_regenerate",
    "conversation_restore",
    "conversation_set_system_prompt",
    "deletions_finish",
    "preset_delete",
    "preset_save",
    "conversation_open",
    "conversation_rename",
    "conversation_set_cwd",
    "conversation_set_compaction",
    "conversation_set_model",
    "conversation_set_reasoning_effort",
    "health_check",
    "preferences_set_theme",
    "queue_add",
    "queue_cancel",
    "resolve_model",
    "stale_before",
    "tabs_reorder",
    "turn_continue",
    "turn_retry",
    "turn_start",
    "turn_stop",
    "turns_recover",
    "user_root",
    "worker_start",
    "workspace_root",
]

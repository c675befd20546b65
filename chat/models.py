"""Conversations and their append-only chunk log (docs/protocol.md#1-vocabulary-and-ids–§3)."""

import functools
import hashlib

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

CONVERSATION_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
REASONING_EFFORTS = ("low", "medium", "high", "xhigh", "max")
DEFAULT_REASONING_EFFORT = "high"


class Conversation(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active"
        QUEUED = "queued"
        IDLE = "idle"
        CLOSED = "closed"

    id = models.CharField(
        primary_key=True, max_length=128, validators=[RegexValidator(CONVERSATION_ID_PATTERN)]
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations"
    )
    title = models.CharField(max_length=200, blank=True, default="")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.IDLE)
    model = models.CharField(max_length=300, blank=True, default="")
    reasoning_effort = models.CharField(
        max_length=10,
        choices=[(e, e) for e in REASONING_EFFORTS],
        default=DEFAULT_REASONING_EFFORT,
    )
    cwd = models.CharField(max_length=1000, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    last_activity_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # The log's counters: the seq of the last chunk and the ordinal of the last message.
    # Bumped under a row lock by services.chunks_append.
    last_seq = models.PositiveBigIntegerField(default=0)
    last_message_ordinal = models.PositiveBigIntegerField(default=0)
    # The number of the last turn (compaction turns have none), bumped by turn_begin.
    last_turn_number = models.PositiveIntegerField(default=0)
    # The share of the model's window (%) at which the conversation is compacted before a
    # provider call; 0: never automatically; None: the config's [compaction] threshold.
    compact_threshold = models.PositiveSmallIntegerField(null=True, blank=True)
    # The system prompt (chat.prompts): the owner's template (None = the deployment's), the
    # text it resolved to, and the model and cwd it was resolved for ("" = not yet resolved).
    system_prompt_template = models.TextField(null=True, blank=True, default=None)
    system_prompt = models.TextField(blank=True, default="")
    system_prompt_resolved_for = models.TextField(blank=True, default="")
    # A fork holds a copy of its source's chunks before ``forked_at_seq``.
    forked_from = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="forks"
    )
    forked_at_seq = models.PositiveBigIntegerField(null=True, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)
    # Set when the owner deletes the conversation; its contents are then purged and the row
    # stays as a tombstone, so the id answers 404 for good and is never reused.
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-last_activity_at"]
        indexes = [models.Index(fields=["owner", "-last_activity_at"])]

    def __str__(self) -> str:
        return f"{self.id} · {self.title}" if self.title else self.id

    @property
    def group_name(self) -> str:
        """The channel-layer group of this conversation (group names are ASCII-only)."""
        return group_name_for(self.id)


@functools.lru_cache(maxsize=4096)  # every event of a turn goes to its group
def group_name_for(conversation_id: str) -> str:
    return "conv." + hashlib.sha1(conversation_id.encode()).hexdigest()


class Chunk(models.Model):
    class Role(models.TextChoices):
        SYSTEM = "system"
        USER = "user"
        ASSISTANT = "assistant"
        TOOL = "tool"

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="chunks")
    seq = models.PositiveBigIntegerField()
    message = models.PositiveBigIntegerField(help_text="ordinal of the message this chunk is in")
    role = models.CharField(max_length=10, choices=Role.choices)
    type = models.CharField(max_length=20)
    payload = models.JSONField(
        help_text="the wire chunk, exactly as docs/protocol.md#2-chunks-and-the-log shapes it"
    )
    turn_id = models.CharField(max_length=64, blank=True, default="", db_index=True)
    step_id = models.CharField(max_length=80, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["conversation", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["conversation", "seq"], name="chunk_unique_seq"),
        ]
        indexes = [
            # The latest compaction of a conversation in one index probe (partial: only
            # compaction chunks are in it, so appending other chunks costs nothing more).
            models.Index(
                fields=["conversation", "seq"],
                condition=models.Q(type="compaction"),
                name="chunk_compactions",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.conversation_id}#{self.seq} {self.role} {self.type}"

    def to_wire(self) -> dict:
        return {"seq": self.seq, "role": self.role, "chunk": self.payload}


class Turn(models.Model):
    class Status(models.TextChoices):
        RUNNING = "running"
        SEALED = "sealed"

    class Kind(models.TextChoices):
        TURN = "turn"
        COMPACTION = "compaction"  # a manual compaction: no prompt, no steps

    id = models.CharField(primary_key=True, max_length=64)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="turns")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.TURN)
    # "turn N" in the web app: 1, 2, 3 … per conversation; None for a compaction turn.
    number = models.PositiveIntegerField(null=True, blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    finish_reason = models.CharField(max_length=40, blank=True, default="")
    model = models.CharField(max_length=300, blank=True, default="")
    worker = models.CharField(max_length=200, blank=True, default="", help_text="owning worker")
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["started_at"]
        indexes = [
            models.Index(fields=["status", "heartbeat_at"]),
            # The running turn of a conversation, found without reading its other turns.
            models.Index(fields=["conversation", "status"], name="turn_conversation_status"),
        ]

    def __str__(self) -> str:
        return self.id


class QueuedMessage(models.Model):
    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="queued_messages"
    )
    text = models.TextField()
    queued_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["queued_at", "id"]

    def to_wire(self) -> dict:
        return {"id": str(self.id), "text": self.text, "queuedAt": self.queued_at.isoformat()}


class Tab(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="tabs"
    )
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="tabs")
    position = models.PositiveIntegerField(default=0)
    active = models.BooleanField(default=False)

    class Meta:
        ordering = ["user", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "conversation"], name="tab_unique_conversation"
            ),
        ]


class Attachment(models.Model):
    """A file a user uploaded to send with a message (docs/protocol.md#21-chunk-types): an image
    the model sees, or a file saved into the conversation's working directory for its tools.

    The bytes live in the ``attachments`` storage (settings.STORAGES), under a name nobody can
    guess and never at a public URL: only the owner downloads them (chat/routes/attachments.py).
    An attachment is unsent (``conversation`` None) until a message carries it; it then belongs
    to that conversation, and deleting the conversation deletes it (attachments_purge).
    """

    class Kind(models.TextChoices):
        IMAGE = "image"
        FILE = "file"

    id = models.CharField(primary_key=True, max_length=64)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="attachments"
    )
    conversation = models.ForeignKey(
        Conversation,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="attachments",
        help_text="the conversation of the message that carried it; empty while unsent",
    )
    kind = models.CharField(max_length=10, choices=Kind.choices)
    name = models.CharField(max_length=255, help_text="the file name, made safe")
    media_type = models.CharField(max_length=100)
    size = models.PositiveBigIntegerField(help_text="bytes, as stored (images re-encoded)")
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    sha256 = models.CharField(max_length=64)
    storage_name = models.CharField(max_length=500, help_text="its name in the storage")
    workspace_path = models.CharField(
        max_length=4096,
        blank=True,
        default="",
        help_text="a file's copy in the conversation's working directory (absolute)",
    )
    description = models.TextField(
        blank=True, default="", help_text="an image described for models without vision"
    )
    described_by = models.CharField(max_length=300, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [models.Index(fields=["owner", "sent_at", "created_at"])]

    def __str__(self) -> str:
        return f"{self.id} · {self.name}"

    def to_wire(self) -> dict:
        """The API's view of an attachment (docs/protocol.md#59-attachments)."""
        wire = {
            "id": self.id,
            "kind": self.kind,
            "name": self.name,
            "mediaType": self.media_type,
            "size": self.size,
        }
        if self.kind == self.Kind.IMAGE:
            wire |= {"width": self.width, "height": self.height}
        wire |= {
            "sha256": self.sha256,
            "createdAt": self.created_at.isoformat(),
            "conversationId": self.conversation_id,
            "sentAt": self.sent_at.isoformat() if self.sent_at else None,
        }
        return wire


class SystemPromptPreset(models.Model):
    """A user's named system prompt template, to start a conversation with."""

    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="system_prompt_presets"
    )
    name = models.CharField(max_length=100)
    template = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["owner", "name"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "name"], name="preset_unique_name"),
        ]

    def to_wire(self) -> dict:
        return {"name": self.name, "template": self.template}


class SearchEntry(models.Model):
    """One searchable text of a user's conversation: a message's text (``seq`` of its chunk)
    or the title (``seq`` 0). The full-text index over ``text`` is the database's own
    (SQLite FTS5, PostgreSQL tsvector), made by the migration (chat.search)."""

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="search_entries"
    )
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    seq = models.PositiveBigIntegerField()
    role = models.CharField(max_length=10)
    text = models.TextField()

    class Meta:
        indexes = [models.Index(fields=["conversation", "seq"])]


class ApiToken(models.Model):
    """A bearer token for JSON clients. Only the SHA-256 of the token is stored."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, blank=True, default="")
    prefix = models.CharField(max_length=12, help_text="first characters, to tell tokens apart")
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked = models.BooleanField(default=False)

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"


class HealthProbe(models.Model):
    """One row that ``GET /health`` rewrites: a committed write proves the database takes
    writes right now (a ``SELECT 1`` answers on a full disk or a read-only database too)."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    checked_at = models.DateTimeField()


class UserSettings(models.Model):
    """A user's choices for the web app, the same on every device."""

    class Theme(models.TextChoices):
        SYSTEM = "system"  # follow the browser's prefers-color-scheme
        LIGHT = "light"
        DARK = "dark"

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="dispatch_settings"
    )
    theme = models.CharField(max_length=10, choices=Theme.choices, default=Theme.SYSTEM)

    class Meta:
        verbose_name_plural = "user settings"

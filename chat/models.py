"""Chat sessions, their messages and each assistant message's thought steps (docs/architecture.md)."""

from __future__ import annotations

import uuid

from django.db import models
from django.utils import timezone

from tenants.models import Tenant


class ChatSession(models.Model):
    """One visitor's conversation with one tenant's assistant; the session token is bound to it."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="sessions")
    visitor_id = models.CharField(max_length=128, blank=True, help_text="The widget's stable per-browser id.")
    rollout_bucket = models.PositiveSmallIntegerField(
        default=100, help_text="1-100 from a hash of tenant and visitor; streams when ≤ the tenant's percentage."
    )
    delivery = models.CharField(
        max_length=16,
        default="batch",
        help_text="How the server decided this session gets replies (stream, poll or batch), at creation.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_activity_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-last_activity_at"]
        indexes = [
            models.Index(fields=["tenant", "-last_activity_at"], name="session_tenant_activity"),
            models.Index(fields=["tenant", "visitor_id"], name="session_tenant_visitor"),
            models.Index(fields=["tenant", "-created_at"], name="session_tenant_created"),
        ]

    def __str__(self) -> str:
        return f"{self.tenant_id}:{self.id}"


class Role(models.TextChoices):
    USER = "user", "User"
    ASSISTANT = "assistant", "Assistant"


class MessageStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    CANCELLED = "cancelled", "Cancelled"
    FAILED = "failed", "Failed"
    INTERRUPTED = "interrupted", "Interrupted"


class Delivery(models.TextChoices):
    """How the client asked to receive the reply; every mode reads the same event log."""

    BATCH = "batch", "Batch"
    POLL = "poll", "Polling"
    STREAM = "stream", "Server-Sent Events"
    WEBSOCKET = "websocket", "WebSocket"


TERMINAL_STATUSES = frozenset(
    {MessageStatus.COMPLETED, MessageStatus.CANCELLED, MessageStatus.FAILED, MessageStatus.INTERRUPTED}
)


class Message(models.Model):
    """A user's message or the assistant's reply to one; a reply carries its reasoning, steps, usage and timings."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    session = models.ForeignKey(ChatSession, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=16, choices=Role.choices)
    reply_to = models.OneToOneField(
        "self",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="reply",
        help_text="For an assistant message: the user message it answers.",
    )
    content = models.TextField(blank=True)
    reasoning = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=MessageStatus.choices, default=MessageStatus.COMPLETED)
    error_code = models.CharField(max_length=32, blank=True)
    error_message = models.CharField(max_length=500, blank=True)
    client_message_id = models.CharField(
        max_length=128, blank=True, help_text="The client's idempotency key, unique within the session when set."
    )
    model = models.CharField(max_length=200, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    reasoning_tokens = models.PositiveIntegerField(null=True, blank=True)
    time_to_first_token_ms = models.PositiveIntegerField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    delivery = models.CharField(max_length=16, choices=Delivery.choices, default=Delivery.BATCH)
    snapshot_seq = models.PositiveIntegerField(
        default=0, help_text="content and reasoning include every delta of the event log up to this seq."
    )
    lease_expires_at = models.DateTimeField(
        null=True, blank=True, help_text="A running reply whose lease lapses is swept as interrupted."
    )
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    agent_key = models.ForeignKey(
        "tenants.ServerKey",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="For a tenant's own agent: the server key that claimed this reply and alone may push its events.",
    )
    agent_seq = models.PositiveIntegerField(
        default=0, help_text="The last of the agent's own sequence numbers accepted for this reply (docs/agents.md)."
    )
    agent_state = models.JSONField(
        default=dict,
        blank=True,
        help_text="What a pushing agent has open (steps, tool calls), its usage and first-token time, between pushes.",
    )
    log_compacted_at = models.DateTimeField(
        null=True, blank=True, help_text="When the event log was removed after the tenant's retention period."
    )
    created_at = models.DateTimeField(default=timezone.now, help_text="Orders the conversation.")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["session", "client_message_id"],
                condition=~models.Q(client_message_id=""),
                name="message_client_id_per_session",
            ),
        ]
        indexes = [
            models.Index(fields=["session", "created_at"], name="message_session_created"),
            models.Index(fields=["status", "lease_expires_at"], name="message_status_lease"),
            models.Index(fields=["session", "status"], name="message_session_status"),
            # The admin dashboard reads replies by when they started (streaming/ops/stats.py).
            models.Index(fields=["started_at"], name="message_started"),
        ]

    def __str__(self) -> str:
        return f"{self.role} {self.id}"

    @property
    def is_finished(self) -> bool:
        return self.status in TERMINAL_STATUSES


class StepKind(models.TextChoices):
    THINKING = "thinking", "Thinking"
    DECISION = "decision", "Decision"
    TOOL_CALL = "tool_call", "Tool call"
    TOOL_RESULT = "tool_result", "Tool result"
    REASONING = "reasoning", "Reasoning"
    MODEL_CALL = "model_call", "Model call"
    RESULT = "result", "Result"


class StepStatus(models.TextChoices):
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"


class ThoughtStep(models.Model):
    """One visible step of an assistant reply (analyzing, deciding, calling a tool, reasoning, answering)."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="steps")
    index = models.PositiveIntegerField(help_text="0, 1, 2, … in the order the agent started the steps.")
    kind = models.CharField(max_length=32, choices=StepKind.choices)
    title = models.CharField(max_length=200)
    detail = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=StepStatus.choices, default=StepStatus.RUNNING)
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["message", "index"]
        constraints = [
            models.UniqueConstraint(fields=["message", "index"], name="thought_step_index_per_message"),
        ]

    def __str__(self) -> str:
        return f"{self.index}. {self.title}"


class FallbackReason(models.TextChoices):
    """Why a widget left a transport; each maps to one of seed 004's codes."""

    CONNECTION_FAILED = "connection_failed", "The stream could not connect or kept dropping (STREAM_001)"
    NOT_AUTHORIZED = "not_authorized", "The server refused streaming (STREAM_002)"
    INVALID_PARAMETERS = "invalid_parameters", "The server refused the stream's parameters (STREAM_003)"
    TIMEOUT = "timeout", "The stream went quiet for too long (STREAM_004)"
    UNSUPPORTED = "unsupported", "The browser lacks the transport (STREAM_005)"
    OTHER = "other", "Anything else (STREAM_005)"


FALLBACK_CODES = {
    FallbackReason.CONNECTION_FAILED: "STREAM_001",
    FallbackReason.NOT_AUTHORIZED: "STREAM_002",
    FallbackReason.INVALID_PARAMETERS: "STREAM_003",
    FallbackReason.TIMEOUT: "STREAM_004",
    FallbackReason.UNSUPPORTED: "STREAM_005",
    FallbackReason.OTHER: "STREAM_005",
}


class FallbackReport(models.Model):
    """A widget's report that it fell back from one transport to another (seed 004's STREAM_005), with the reason."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="fallbacks")
    session = models.ForeignKey(ChatSession, on_delete=models.CASCADE, related_name="fallbacks")
    message = models.ForeignKey(Message, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    reason = models.CharField(max_length=32, choices=FallbackReason.choices)
    code = models.CharField(max_length=16)
    from_delivery = models.CharField(max_length=16)
    to_delivery = models.CharField(max_length=16)
    detail = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["tenant", "-created_at"], name="fallback_tenant_recent")]

    def __str__(self) -> str:
        return f"{self.session_id}: {self.from_delivery} → {self.to_delivery} ({self.reason})"


class Event(models.Model):
    """One entry of a reply's event log (docs/events.md): ``seq`` is 1, 2, 3, … per message with no gaps; the unique
    constraint makes a second writer of a seq fail instead of forking the log.

    The table keeps the name it had when the log lived in the ``streaming`` app (migration chat 0004 moved only the
    model's state), so logs written before the move are read as they are.
    """

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveIntegerField()
    type = models.CharField(max_length=32)
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "streaming_event"
        ordering = ["message", "seq"]
        constraints = [models.UniqueConstraint(fields=["message", "seq"], name="event_seq_per_message")]

    def __str__(self) -> str:
        return f"{self.message_id}#{self.seq} {self.type}"

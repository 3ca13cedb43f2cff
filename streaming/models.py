"""The persisted event log: one ordered, gap-free sequence of events per assistant message (docs/events.md)."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from chat.models import Message


class Event(models.Model):
    """One entry of a message's log. ``seq`` is 1, 2, 3, … per message; the unique constraint forbids gaps' twins."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveIntegerField()
    type = models.CharField(max_length=32)
    data = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["message", "seq"]
        constraints = [models.UniqueConstraint(fields=["message", "seq"], name="event_seq_per_message")]

    def __str__(self) -> str:
        return f"{self.message_id}#{self.seq} {self.type}"

"""Reads of the event log."""

from __future__ import annotations

import uuid

from django.db.models import Max

from chat.models import Message
from streaming.events import EventType, LoggedEvent
from streaming.models import Event

# How many events one read returns at most; readers page with the last seq they got.
PAGE = 500


def events_after(*, message_id: uuid.UUID, after: int, limit: int = PAGE) -> list[LoggedEvent]:
    """The message's events with seq > after, in order."""
    rows = Event.objects.filter(message_id=message_id, seq__gt=after).order_by("seq")[:limit]
    return [
        LoggedEvent(message_id=message_id, seq=row.seq, type=row.type, data=row.data, created_at=row.created_at)
        for row in rows
    ]


def log_last_seq(*, message_id: uuid.UUID) -> int:
    return Event.objects.filter(message_id=message_id).aggregate(last=Max("seq"))["last"] or 0


def content_from_log(*, message_id: uuid.UUID) -> tuple[str, str, int]:
    """The reply's content and reasoning so far: its snapshot plus the deltas logged after it; and the last seq."""
    message = Message.objects.only("content", "reasoning", "snapshot_seq").get(id=message_id)
    content, reasoning = [message.content], [message.reasoning]
    last = message.snapshot_seq
    rows = Event.objects.filter(message_id=message_id, seq__gt=message.snapshot_seq).order_by("seq")
    for seq, kind, data in rows.values_list("seq", "type", "data"):
        last = seq
        if kind == EventType.TEXT_DELTA:
            content.append(data.get("delta", ""))
        elif kind == EventType.REASONING_DELTA:
            reasoning.append(data.get("delta", ""))
    return "".join(content), "".join(reasoning), last


def fill_live_content(messages: list[Message]) -> list[Message]:
    """Bring unfinished replies' content and reasoning up to the newest logged delta (in memory, not saved)."""
    for message in messages:
        if not message.is_finished and message.log_compacted_at is None and message.role == "assistant":
            message.content, message.reasoning, _ = content_from_log(message_id=message.id)
    return messages

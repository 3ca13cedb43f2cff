"""The event log's vocabulary: event types and one logged event (docs/events.md).

Pure code: no database, no channel layer, no wire format. Every transport encodes a ``LoggedEvent`` its own way, in
one place: ``streaming.transports.encode`` (polling, SSE, WebSocket) and ``streaming.live.fanout`` (the channel
layer).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any


class EventType(StrEnum):
    MESSAGE_STARTED = "message.started"
    STATUS = "status"
    STEP_STARTED = "step.started"
    STEP_COMPLETED = "step.completed"
    REASONING_DELTA = "reasoning.delta"
    TEXT_DELTA = "text.delta"
    TOOL_CALL = "tool.call"
    TOOL_RESULT = "tool.result"
    MESSAGE_COMPLETED = "message.completed"
    MESSAGE_CANCELLED = "message.cancelled"
    MESSAGE_FAILED = "message.failed"


TERMINAL_TYPES = frozenset({EventType.MESSAGE_COMPLETED, EventType.MESSAGE_CANCELLED, EventType.MESSAGE_FAILED})
DELTA_TYPES = frozenset({EventType.TEXT_DELTA, EventType.REASONING_DELTA})


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """One stored entry of a message's log: ``seq`` is 1, 2, 3, … per message, with no gaps."""

    message_id: uuid.UUID
    seq: int
    type: str
    data: dict[str, Any]
    created_at: datetime

    @property
    def is_terminal(self) -> bool:
        return self.type in TERMINAL_TYPES

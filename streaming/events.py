"""The event log's vocabulary: event types, one logged event, and how it is framed for SSE (docs/events.md).

Pure code: no database, no channel layer. Everything that delivers a reply (polling, SSE, WebSocket) speaks this.
"""

from __future__ import annotations

import json
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

    def as_dict(self) -> dict[str, Any]:
        """The event as polling and WebSocket clients get it."""
        return {
            "message_id": str(self.message_id),
            "seq": self.seq,
            "type": self.type,
            "data": self.data,
            "ts": self.created_at.isoformat(),
        }

    def as_wire(self) -> dict[str, Any]:
        """The event as it crosses the channel layer (msgpack-friendly: strings and numbers only)."""
        return {
            "message_id": self.message_id.hex,
            "seq": self.seq,
            "type": self.type,
            "data": self.data,
            "ts": self.created_at.isoformat(),
        }

    @classmethod
    def from_wire(cls, wire: dict[str, Any]) -> LoggedEvent:
        return cls(
            message_id=uuid.UUID(hex=wire["message_id"]),
            seq=int(wire["seq"]),
            type=str(wire["type"]),
            data=dict(wire["data"]),
            created_at=datetime.fromisoformat(wire["ts"]),
        )

    def sse(self) -> bytes:
        """The event as one Server-Sent Events frame: ``id``, ``event`` and one ``data`` line of JSON."""
        payload = json.dumps({**self.data, "message_id": str(self.message_id), "ts": self.created_at.isoformat()})
        return f"id: {self.seq}\nevent: {self.type}\ndata: {payload}\n\n".encode()


def message_group(message_id: uuid.UUID) -> str:
    """Channel-layer group of everyone following one message's log."""
    return f"brook.msg.{message_id.hex}"


def session_group(session_id: uuid.UUID) -> str:
    """Channel-layer group of everyone following all messages of a session (WebSocket clients)."""
    return f"brook.sess.{session_id.hex}"


def run_group(message_id: uuid.UUID) -> str:
    """Channel-layer group of the worker running a message: control messages (cancel) go here."""
    return f"brook.run.{message_id.hex}"

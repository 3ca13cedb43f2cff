"""How one logged event looks on each transport (docs/events.md, "Wire formats"): the one place that encodes events
for clients. The channel layer's own encoding is ``streaming.live.fanout.to_wire``.

- polling: ``{"message_id", "seq", "type", "data", "ts"}`` in the ``events`` list of ``GET /api/v1/messages/{id}``;
- Server-Sent Events: one frame, ``id: <seq>``, ``event: <type>``, one ``data:`` line of JSON (the event's data
  with ``message_id`` and ``ts``), per the WHATWG HTML standard's event stream format;
- WebSocket: ``{"type": "event", "message_id", "seq", "event", "data", "ts"}``.
"""

from __future__ import annotations

import json
from typing import Any

from chat.events import LoggedEvent

# The first bytes of every SSE response: a comment (so headers and a first chunk leave before the model's first
# token) and the reconnection delay, in milliseconds, for EventSource.
SSE_PREAMBLE = b": connected\n\nretry: 3000\n\n"
# Sent after BROOK_HEARTBEAT_SECONDS of quiet, so proxies keep an idle stream open.
SSE_HEARTBEAT = b": ping\n\n"


def poll_event(event: LoggedEvent) -> dict[str, Any]:
    """The event as polling clients get it."""
    return {
        "message_id": str(event.message_id),
        "seq": event.seq,
        "type": event.type,
        "data": event.data,
        "ts": event.created_at.isoformat(),
    }


def sse_frame(event: LoggedEvent) -> bytes:
    """The event as one Server-Sent Events frame: ``id``, ``event`` and one ``data`` line of JSON."""
    payload = json.dumps({**event.data, "message_id": str(event.message_id), "ts": event.created_at.isoformat()})
    return f"id: {event.seq}\nevent: {event.type}\ndata: {payload}\n\n".encode()


def ws_frame(event: LoggedEvent) -> dict[str, Any]:
    """The event as a WebSocket JSON frame."""
    return {
        "type": "event",
        "message_id": str(event.message_id),
        "seq": event.seq,
        "event": event.type,
        "data": event.data,
        "ts": event.created_at.isoformat(),
    }

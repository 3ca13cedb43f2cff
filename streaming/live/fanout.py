"""Live fan-out of stored events through the channel layer (docs/delivery.md, "Several workers").

The channel layer is Redis across workers when ``REDIS_URL`` is set (``streaming.live.layers``), in memory otherwise.
Publishing is best effort by design: the layer delivers at most once, so readers treat it as a hint and fill any gap
from the database (``streaming.live.reader``). An event is always stored before it is published.

Groups: ``message_group`` (everyone following one reply: SSE, long polls), ``session_group`` (WebSockets, which
follow every reply of a session), ``run_group`` (the worker running a reply: cancels) and ``agent_group`` (a
tenant's own agents waiting to claim a reply). On the layer an event
travels as ``to_wire`` makes it: strings and numbers only, so msgpack carries it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from channels.layers import get_channel_layer

from chat.events import LoggedEvent

logger = logging.getLogger(__name__)


def message_group(message_id: uuid.UUID) -> str:
    """Channel-layer group of everyone following one message's log."""
    return f"brook.msg.{message_id.hex}"


def session_group(session_id: uuid.UUID) -> str:
    """Channel-layer group of everyone following all messages of a session (WebSocket clients)."""
    return f"brook.sess.{session_id.hex}"


def run_group(message_id: uuid.UUID) -> str:
    """Channel-layer group of the worker running a message: control messages (cancel) go here."""
    return f"brook.run.{message_id.hex}"


def agent_group(tenant_id: int) -> str:
    """Channel-layer group of a tenant's own agents waiting to claim a reply (docs/agents.md)."""
    return f"brook.agent.{tenant_id}"


def to_wire(event: LoggedEvent) -> dict[str, Any]:
    """The event as it crosses the channel layer (msgpack-friendly: strings and numbers only)."""
    return {
        "message_id": event.message_id.hex,
        "seq": event.seq,
        "type": event.type,
        "data": event.data,
        "ts": event.created_at.isoformat(),
    }


def from_wire(message: dict[str, Any]) -> list[LoggedEvent]:
    """The events of a ``log.events`` channel-layer message, as ``publish`` sent them."""
    return [
        LoggedEvent(
            message_id=uuid.UUID(hex=wire["message_id"]),
            seq=int(wire["seq"]),
            type=str(wire["type"]),
            data=dict(wire["data"]),
            created_at=datetime.fromisoformat(wire["ts"]),
        )
        for wire in message.get("events", [])
    ]


def layer() -> Any:
    """This process's channel layer (settings always configure one)."""
    found = get_channel_layer()
    if found is None:  # pragma: no cover - settings always configure one
        raise RuntimeError("No channel layer is configured")
    return found


async def publish(events: Sequence[LoggedEvent], *, session_id: uuid.UUID) -> None:
    """Send stored events to each message's followers (SSE, long polls) and the session's (WebSockets): one
    ``log.events`` message per reply, its events in order."""
    by_message: dict[uuid.UUID, list[LoggedEvent]] = {}
    for event in events:
        by_message.setdefault(event.message_id, []).append(event)
    channel_layer = layer()
    for message_id, batch in by_message.items():
        message = {"type": "log.events", "message_id": message_id.hex, "events": [to_wire(event) for event in batch]}
        try:
            await asyncio.gather(
                channel_layer.group_send(message_group(message_id), message),
                channel_layer.group_send(session_group(session_id), message),
            )
        except Exception:
            logger.warning("Publishing events of %s failed; readers will catch up from the database", message_id)


async def announce_queued(*, tenant_id: int) -> None:
    """Wake the tenant's agents waiting to claim: a reply is queued (a hint; claimers also re-check on their own)."""
    try:
        await layer().group_send(agent_group(tenant_id), {"type": "reply.queued"})
    except Exception:
        logger.warning("Could not tell tenant %s's agents of a queued reply; their next check finds it", tenant_id)


async def request_stop(message_id: uuid.UUID) -> None:
    """Tell whichever worker runs ``message_id`` to stop it."""
    try:
        await layer().group_send(run_group(message_id), {"type": "run.cancel", "message_id": message_id.hex})
    except Exception:
        logger.warning(
            "Could not broadcast cancel of %s; its runner sees the flag at its next lease renewal", message_id
        )

"""Live fan-out of stored events through the channel layer (Redis across workers when REDIS_URL is set).

Publishing is best effort by design: the channel layer delivers at most once, so readers treat it as a hint and
fill any gap from the database (``streaming.delivery``). An event is always stored before it is published.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from streaming.events import LoggedEvent, message_group, run_group, session_group

logger = logging.getLogger(__name__)


def _layer() -> Any:
    layer = get_channel_layer()
    if layer is None:  # pragma: no cover - settings always configure one
        raise RuntimeError("No channel layer is configured")
    return layer


async def publish(events: Sequence[LoggedEvent], *, session_id: uuid.UUID) -> None:
    """Send stored events to the message's followers (SSE, long polls) and the session's (WebSockets)."""
    if not events:
        return
    message = {
        "type": "log.events",
        "message_id": events[0].message_id.hex,
        "events": [event.as_wire() for event in events],
    }
    layer = _layer()
    try:
        await asyncio.gather(
            layer.group_send(message_group(events[0].message_id), message),
            layer.group_send(session_group(session_id), message),
        )
    except Exception:
        logger.warning("Publishing events of %s failed; readers will catch up from the database", events[0].message_id)


def publish_on_commit(events: Sequence[LoggedEvent], *, session_id: uuid.UUID) -> None:
    """From synchronous code inside a transaction: publish once it has committed."""
    if events:
        transaction.on_commit(lambda: async_to_sync(publish)(list(events), session_id=session_id))


async def request_stop(message_id: uuid.UUID) -> None:
    """Tell whichever worker runs ``message_id`` to stop it."""
    try:
        await _layer().group_send(run_group(message_id), {"type": "run.cancel", "message_id": message_id.hex})
    except Exception:
        logger.warning(
            "Could not broadcast cancel of %s; its runner sees the flag at its next lease renewal", message_id
        )

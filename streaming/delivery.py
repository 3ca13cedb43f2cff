"""Following a message's log: stored events first, then live ones, exactly once (docs/delivery.md).

``follow`` is what SSE and long polls read; the WebSocket consumer applies the same rule per message. The rule:
subscribe to the live group first, then read what is stored after the cursor, then take live events, skipping any
seq already sent and reading any gap from the database. The channel layer may drop or reorder; the log may not.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from channels.layers import get_channel_layer
from django.conf import settings

from streaming.db import db
from streaming.events import LoggedEvent, message_group
from streaming.selectors import PAGE, events_after

GAP_READ_ATTEMPTS = 10
# While the channel layer has lost Redis (streaming/layers.py), quiet streams re-read the database this often.
DEGRADED_RECHECK_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Nothing happened for a while; SSE sends a comment so proxies keep the connection."""


HEARTBEAT = Heartbeat()


class Cursor:
    """The last seq a client has; ``accept`` says whether a live event is new, and whether there is a gap."""

    def __init__(self, after: int) -> None:
        self.last = after

    def is_new(self, event: LoggedEvent) -> bool:
        return event.seq > self.last

    def has_gap_before(self, event: LoggedEvent) -> bool:
        return event.seq > self.last + 1

    def advance(self, event: LoggedEvent) -> None:
        self.last = event.seq


async def stored_after(message_id: uuid.UUID, after: int) -> list[LoggedEvent]:
    return await db(events_after)(message_id=message_id, after=after, limit=PAGE)


async def admit(message_id: uuid.UUID, cursor: Cursor, live: list[LoggedEvent]) -> list[LoggedEvent]:
    """The live events to send next, in order, advancing ``cursor``: repeats dropped, gaps read from the database.

    A gap is filled up to and including the live event that revealed it, from the database, never skipped: every
    published event was stored first, so the read finds it (a reader that lags a commit retries briefly).
    """
    out: list[LoggedEvent] = []
    for event in live:
        if not cursor.is_new(event):
            continue
        if not cursor.has_gap_before(event):
            cursor.advance(event)
            out.append(event)
            continue
        for attempt in range(GAP_READ_ATTEMPTS):
            for stored in await stored_after(message_id, cursor.last):
                if stored.seq > event.seq or stored.seq != cursor.last + 1:
                    break
                cursor.advance(stored)
                out.append(stored)
            if not cursor.is_new(event):
                break
            await asyncio.sleep(0.01 * (attempt + 1))
    return out


async def follow(
    message_id: uuid.UUID, after: int, *, heartbeat: float | None = None, recheck: float | None = None
) -> AsyncGenerator[LoggedEvent | Heartbeat, None]:
    """Yield the message's events with seq > ``after``, in order, each once, until the terminal event.

    ``heartbeat``: yield ``HEARTBEAT`` after this many quiet seconds. ``recheck``: read the database after this many
    quiet seconds even without a live event (a lost publish, a Redis restart), so no stream waits forever.
    """
    heartbeat = heartbeat if heartbeat is not None else float(settings.BROOK_HEARTBEAT_SECONDS)
    recheck = recheck if recheck is not None else float(settings.BROOK_STREAM_RECHECK_SECONDS)
    layer = get_channel_layer()
    assert layer is not None  # noqa: S101 - settings always configure one
    channel = await layer.new_channel()
    group = message_group(message_id)
    await layer.group_add(group, channel)
    cursor = Cursor(after)
    try:
        # Catch up from the database; the subscription above already buffers anything newer.
        while True:
            batch = await stored_after(message_id, cursor.last)
            for event in batch:
                cursor.advance(event)
                yield event
                if event.is_terminal:
                    return
            if len(batch) < PAGE:
                break
        del batch  # an idle stream keeps nothing it has sent
        quiet_since = time.monotonic()
        last_check = quiet_since
        while True:
            every = min(recheck, DEGRADED_RECHECK_SECONDS) if getattr(layer, "degraded", False) else recheck
            wait = min(heartbeat - (time.monotonic() - quiet_since), every - (time.monotonic() - last_check))
            try:
                async with asyncio.timeout(max(wait, 0.01)):  # in this task: wait_for would start one per wait
                    message = await layer.receive(channel)
            except TimeoutError:
                now = time.monotonic()
                if now - last_check >= every:
                    last_check = now
                    for event in await stored_after(message_id, cursor.last):
                        cursor.advance(event)
                        quiet_since = time.monotonic()
                        yield event
                        if event.is_terminal:
                            return
                if time.monotonic() - quiet_since >= heartbeat:
                    quiet_since = time.monotonic()
                    yield HEARTBEAT
                continue
            live = [LoggedEvent.from_wire(wire) for wire in message.get("events", [])]
            for event in await admit(message_id, cursor, live):
                yield event
                if event.is_terminal:
                    return
            quiet_since = last_check = time.monotonic()
    finally:
        await asyncio.shield(layer.group_discard(group, channel))


async def wait_for_events(message_id: uuid.UUID, after: int, seconds: float) -> list[LoggedEvent]:
    """Long polling: the events after ``after``, waiting up to ``seconds`` for the first one."""
    events: list[LoggedEvent] = []
    stream = follow(message_id, after, heartbeat=seconds + 1, recheck=min(seconds, 5.0))
    try:
        async with asyncio.timeout(seconds):
            async for item in stream:
                if isinstance(item, LoggedEvent):
                    events.append(item)
                    break
    except TimeoutError:
        return events
    finally:
        await stream.aclose()
    # Take whatever else is already stored, so one response carries a whole burst.
    return events + await stored_after(message_id, events[-1].seq) if events else events

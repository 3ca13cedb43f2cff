"""Following a message's log: stored events first, then live ones, each exactly once (docs/delivery.md, "Exactly once").

``LogReader`` is the one reader every transport follows logs through: SSE and long polls (``follow``, one message)
and the WebSocket consumer (every reply of a session). The rule: subscribe to the live group first, then read what
is stored after the cursor (``catch_up``), then take live events (``live``), skipping any seq already sent and
reading any gap from the database, and re-read the database when it has been quiet for a while (``recheck``) in
case a publish was lost. The channel layer may drop or reorder; the log may not.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncGenerator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from chat.events import LoggedEvent
from chat.models import Message
from chat.selectors import PAGE, events_after
from core.db_bridge import db
from core.errors import ApiError, ErrorCode
from streaming.live.fanout import from_wire, layer, message_group

GAP_READ_ATTEMPTS = 10
# While the channel layer has lost Redis (streaming/live/layers.py), quiet streams re-read the database this often.
DEGRADED_RECHECK_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Nothing happened for a while; SSE sends a comment so proxies keep the connection."""


HEARTBEAT = Heartbeat()


class Cursor:
    """The last seq a client has; says whether a live event is new, and whether there is a gap before it."""

    def __init__(self, after: int) -> None:
        self.last = after

    def is_new(self, event: LoggedEvent) -> bool:
        return event.seq > self.last

    def has_gap_before(self, event: LoggedEvent) -> bool:
        return event.seq > self.last + 1

    def advance(self, event: LoggedEvent) -> None:
        self.last = event.seq


async def stored_after(message_id: uuid.UUID, after: int) -> list[LoggedEvent]:
    """One page (``PAGE`` events at most) of the message's stored events with seq > ``after``."""
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


def check_cursor(message: Message, after: int, last: int) -> None:
    """A reader may start after any seq up to the log's ``last``; 410 ``LOG_EXPIRED`` once the log is compacted,
    400 ``STREAM_003`` for a cursor past its end."""
    if message.log_compacted_at is not None:
        raise ApiError(
            ErrorCode.LOG_EXPIRED,
            "This reply's event log has passed its retention period; GET the message for its content.",
            status_code=410,
        )
    if after > last:
        raise ApiError(
            ErrorCode.STREAM_INVALID_PARAMETERS,
            f"The cursor {after} is past the end of this message's log (last seq {last}).",
            details={"last_seq": last},
        )


def recheck_seconds(recheck: float) -> float:
    """How long a quiet reader waits before re-reading the database: ``recheck``, or at most
    ``DEGRADED_RECHECK_SECONDS`` while the channel layer has lost Redis."""
    return min(recheck, DEGRADED_RECHECK_SECONDS) if getattr(layer(), "degraded", False) else recheck


class LogReader:
    """One client's cursors over the logs it follows; every event it yields is the next one of its message.

    Callers serialize their calls (a stream is one task; the WebSocket consumer holds a lock), since ``live``,
    ``catch_up`` and ``recheck`` advance the same cursors. A message whose terminal event was yielded is finished:
    ``recheck`` skips it until ``follow_from`` moves its cursor again.
    """

    def __init__(self, *, follows_new: bool) -> None:
        """``follows_new``: live events of a message not followed yet start following it from seq 0 (a WebSocket
        follows every reply of its session); otherwise they are ignored (a stream follows only its message)."""
        self.cursors: dict[uuid.UUID, Cursor] = {}
        self.finished: set[uuid.UUID] = set()
        self.follows_new = follows_new

    def follow_from(self, message_id: uuid.UUID, after: int) -> None:
        """Deliver ``message_id``'s events after seq ``after`` from now on."""
        self.cursors[message_id] = Cursor(after)
        self.finished.discard(message_id)

    def watch(self, message_id: uuid.UUID) -> None:
        """Follow ``message_id`` from its start, unless it is followed already (a reply this client just sent)."""
        self.cursors.setdefault(message_id, Cursor(0))

    def _yielded(self, event: LoggedEvent) -> LoggedEvent:
        if event.is_terminal:
            self.finished.add(event.message_id)
        return event

    async def catch_up(self, message_id: uuid.UUID) -> AsyncGenerator[LoggedEvent, None]:
        """Everything stored past the message's cursor, page by page, in order."""
        cursor = self.cursors.setdefault(message_id, Cursor(0))
        while True:
            batch = await stored_after(message_id, cursor.last)
            for event in batch:
                cursor.advance(event)
                yield self._yielded(event)
            if len(batch) < PAGE:
                return

    async def live(self, message: dict[str, Any]) -> AsyncGenerator[LoggedEvent, None]:
        """The new events of a ``log.events`` channel-layer message (``streaming.live.fanout``), gaps filled."""
        events = from_wire(message)
        if not events:
            return
        message_id = events[0].message_id
        if message_id not in self.cursors and not self.follows_new:
            return
        cursor = self.cursors.setdefault(message_id, Cursor(0))
        for event in await admit(message_id, cursor, events):
            yield self._yielded(event)

    async def recheck(self) -> AsyncGenerator[LoggedEvent, None]:
        """Catch up every followed message that has not finished: what a lost publish would have delivered."""
        for message_id in [m for m in self.cursors if m not in self.finished]:
            async with aclosing(self.catch_up(message_id)) as events:
                async for event in events:
                    yield event


async def follow(
    message_id: uuid.UUID, after: int, *, heartbeat: float | None = None, recheck: float | None = None
) -> AsyncGenerator[LoggedEvent | Heartbeat, None]:
    """Yield the message's events with seq > ``after``, in order, each once, until the terminal event.

    ``heartbeat``: yield ``HEARTBEAT`` after this many quiet seconds. ``recheck``: read the database after this many
    quiet seconds even without a live event (a lost publish, a Redis restart), so no stream waits forever.
    """
    heartbeat = heartbeat if heartbeat is not None else float(settings.BROOK_HEARTBEAT_SECONDS)
    recheck = recheck if recheck is not None else float(settings.BROOK_STREAM_RECHECK_SECONDS)
    channel_layer = layer()
    channel = await channel_layer.new_channel()
    group = message_group(message_id)
    await channel_layer.group_add(group, channel)
    reader = LogReader(follows_new=False)
    reader.follow_from(message_id, after)
    try:
        # Catch up from the database; the subscription above already buffers anything newer.
        async with aclosing(reader.catch_up(message_id)) as stored:
            async for event in stored:
                yield event
                if event.is_terminal:
                    return
        quiet_since = time.monotonic()
        last_check = quiet_since
        while True:
            every = recheck_seconds(recheck)
            wait = min(heartbeat - (time.monotonic() - quiet_since), every - (time.monotonic() - last_check))
            try:
                async with asyncio.timeout(max(wait, 0.01)):  # in this task: wait_for would start one per wait
                    message = await channel_layer.receive(channel)
            except TimeoutError:
                now = time.monotonic()
                if now - last_check >= every:
                    last_check = now
                    async with aclosing(reader.recheck()) as stored:
                        async for event in stored:
                            quiet_since = time.monotonic()
                            yield event
                            if event.is_terminal:
                                return
                if time.monotonic() - quiet_since >= heartbeat:
                    quiet_since = time.monotonic()
                    yield HEARTBEAT
                continue
            async with aclosing(reader.live(message)) as admitted:
                async for event in admitted:
                    yield event
                    if event.is_terminal:
                        return
            quiet_since = last_check = time.monotonic()
    finally:
        await asyncio.shield(channel_layer.group_discard(group, channel))


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

"""The sweeper: ends replies whose worker died, ends replies of tenants' own agents past their time limit, restarts
stalled queues, and compacts expired logs.

Every worker runs one (``config/asgi.py`` starts it with the first request); ``manage.py brook_sweeper`` runs it as a
process of its own. There is no single point of failure and no coordination: every change is a conditional update
(``reply_interrupt`` only takes a reply whose lease has lapsed), so two sweepers never end a reply twice.

See docs/operations.md, "Background work".
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from chat import selectors, services
from core.db_bridge import db
from streaming.live import fanout
from streaming.run import runner

logger = logging.getLogger(__name__)

# A queued reply older than this, with nothing running in its session, has lost the worker that was to start it.
STALLED_QUEUE_AFTER = timedelta(seconds=10)
COMPACT_EVERY = timedelta(minutes=10)


@dataclass
class SweepReport:
    interrupted: int = 0
    timed_out: int = 0  # replies of tenants' own agents past a time limit or an ignored Stop
    restarted: int = 0
    compacted: int = 0


async def sweep_once(*, now: datetime | None = None, compact: bool = True) -> SweepReport:
    """One pass; safe to run in any number of workers at once."""
    now = now or timezone.now()
    report = SweepReport()
    for reply_id, session_id in await db(selectors.replies_with_lapsed_lease)(now=now):
        event = await db(services.reply_interrupt)(reply_id=reply_id, now=now)
        if event is None:
            continue
        report.interrupted += 1
        logger.warning("Reply %s lost its worker; marked interrupted", reply_id)
        await fanout.publish([event], session_id=session_id)
        await runner.start_next_in_session(session_id)
    for reply_id, session_id in await db(selectors.replies_of_own_agents_due)(now=now, stop_grace=services.STOP_GRACE):
        event = await db(services.reply_time_out)(reply_id=reply_id, now=now)
        if event is not None:
            report.timed_out += 1
            await fanout.publish([event], session_id=session_id)
    for reply_id in await db(selectors.replies_stalled_in_queue)(now=now, after=STALLED_QUEUE_AFTER):
        runner.start_detached(reply_id)
        report.restarted += 1
    if compact:
        report.compacted = await db(services.logs_compact)(now=now)
    return report


async def sweep_forever(interval: float) -> None:
    last_compaction = timezone.now() - COMPACT_EVERY
    while True:
        await asyncio.sleep(interval * random.uniform(0.8, 1.2))  # noqa: S311 - jitter, not security
        now = timezone.now()
        compact = now - last_compaction >= COMPACT_EVERY
        try:
            await sweep_once(now=now, compact=compact)
        except Exception:
            logger.exception("Sweep failed; trying again in %.0f s", interval)
            continue
        if compact:
            last_compaction = now


_started: set[asyncio.AbstractEventLoop] = set()
_tasks: set[asyncio.Task[None]] = set()


def ensure_started() -> None:
    """Start this worker's sweeper on the running loop, once (``BROOK_SWEEP_SECONDS`` = 0 turns it off)."""
    interval = float(settings.BROOK_SWEEP_SECONDS)
    loop = asyncio.get_running_loop()
    if interval <= 0 or loop in _started:
        return
    _started.add(loop)
    task = loop.create_task(sweep_forever(interval), context=contextvars.Context())
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)

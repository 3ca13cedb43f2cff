"""The runner: drives a tenant's agent for one reply, in the worker that started it, writing the event log.

docs/delivery.md, "Running a message". A reply is claimed with a conditional update (queued → running, one running
reply per session), so it runs at most once whoever asks. While it runs, the runner holds a lease that it renews;
a worker that dies stops renewing and the sweeper (``streaming.run.sweeper``) ends the reply as interrupted. The run
ends in exactly one terminal event: completed, cancelled (``cancel``, from any worker), or failed (``STREAM_004``
past the tenant's ``max_stream_seconds``, ``AGENT_ERROR`` when the agent raised). Partial content is always kept.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import uuid
from collections.abc import Sequence

from django.conf import settings

from chat import selectors, services
from chat.events import LoggedEvent
from chat.models import Message, MessageStatus
from core import metrics
from core.db_bridge import db
from core.errors import ErrorCode
from core.logs import log_context
from streaming.agents.base import AgentError, Turn
from streaming.agents.registry import agent_for
from streaming.live import fanout
from streaming.live.fanout import run_group
from streaming.run.recorder import LogRecorder

logger = logging.getLogger(__name__)

# Runs in this process: their stop signals, and strong references to detached tasks.
_stops: dict[uuid.UUID, asyncio.Event] = {}
_detached: set[asyncio.Task[None]] = set()


def _turns(reply: Message) -> list[Turn]:
    return [Turn(role=m.role, content=m.content) for m in selectors.conversation_before(reply=reply)]


def _lease_seconds() -> float:
    return float(settings.BROOK_LEASE_SECONDS)


async def _listen_for_stop(reply_id: uuid.UUID, stop: asyncio.Event) -> None:
    """Wait for a cancel sent through the channel layer by whichever worker took the request."""
    layer = fanout.layer()
    channel = await layer.new_channel()
    group = run_group(reply_id)
    await layer.group_add(group, channel)
    try:
        while not stop.is_set():
            message = await layer.receive(channel)
            if message.get("type") == "run.cancel":
                stop.set()
    finally:
        await asyncio.shield(layer.group_discard(group, channel))


async def _keep_lease(reply_id: uuid.UUID, stop: asyncio.Event, lost: asyncio.Event) -> None:
    """Renew the lease; notice a cancel flag the broadcast missed, or that the sweeper took the reply."""
    lease = _lease_seconds()
    while True:
        await asyncio.sleep(lease / 2.5)
        try:
            ours, cancel_requested = await db(services.reply_renew_lease)(reply_id=reply_id, lease_seconds=lease)
        except Exception:
            logger.exception("Could not renew the lease of %s", reply_id)
            continue
        if not ours:
            lost.set()
            stop.set()
            return
        if cancel_requested:
            stop.set()


async def run_reply(*, reply_id: uuid.UUID) -> None:
    """Run the agent for a queued reply to its end; does nothing if it is not queued or must wait its turn."""
    claimed = await db(services.reply_claim)(reply_id=reply_id, lease_seconds=_lease_seconds())
    if claimed is None:
        return
    reply, status_event = claimed
    with log_context(message_id=reply_id, session_id=reply.session_id, tenant_id=reply.session.tenant_id):
        await _run_claimed(reply, status_event)


async def _run_claimed(reply: Message, status_event: LoggedEvent) -> None:
    reply_id = reply.id
    session_id = reply.session_id
    tenant = reply.session.tenant

    async def publish(events: Sequence[LoggedEvent]) -> None:
        await fanout.publish(events, session_id=session_id)

    await publish([status_event])
    stop, lost = asyncio.Event(), asyncio.Event()
    _stops[reply_id] = stop
    recorder = LogRecorder(
        reply_id=reply_id,
        next_seq=status_event.seq + 1,
        flush_interval=settings.BROOK_DELTA_FLUSH_MS / 1000,
        publish=publish,
        visibility=tenant.thought_visibility,
        tenant=tenant.slug,
        delivery=reply.delivery,
    )
    helpers = [
        asyncio.create_task(_listen_for_stop(reply_id, stop)),
        asyncio.create_task(_keep_lease(reply_id, stop, lost)),
    ]
    try:
        with metrics.active_reply(tenant=tenant.slug):
            await _drive(reply, recorder, stop, lost)
    finally:
        _stops.pop(reply_id, None)
        for helper in helpers:
            helper.cancel()
        await asyncio.gather(*helpers, return_exceptions=True)
    await start_next_in_session(session_id)
    logger.info("Reply %s of tenant %s ended", reply_id, tenant.pk)


async def _drive(reply: Message, recorder: LogRecorder, stop: asyncio.Event, lost: asyncio.Event) -> None:
    tenant = reply.session.tenant
    try:
        turns = await db(_turns)(reply)
        agent = agent_for(tenant)
    except Exception:
        logger.exception("Could not prepare reply %s", reply.id)
        await recorder.finish(
            MessageStatus.FAILED, error_code=ErrorCode.AGENT_ERROR, error_message="The assistant is not available."
        )
        return
    agent_task = asyncio.create_task(agent.run(turns, recorder))
    stopped = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait(
            {agent_task, stopped}, timeout=tenant.max_stream_seconds, return_when=asyncio.FIRST_COMPLETED
        )
    except asyncio.CancelledError:  # the worker is shutting down: stop the agent too; the sweeper ends the reply
        agent_task.cancel()
        stopped.cancel()
        raise
    stopped.cancel()
    if agent_task in done:
        error = agent_task.exception()
        if error is None:
            await recorder.finish(MessageStatus.COMPLETED)
            return
        if isinstance(error, AgentError):
            logger.warning("Reply %s failed: %s (tenant %s)", reply.id, error.code, tenant.pk)
            await recorder.finish(MessageStatus.FAILED, error_code=error.code, error_message=error.message)
            return
        logger.error("Agent failed for reply %s (tenant %s)", reply.id, tenant.pk, exc_info=error)
        await recorder.finish(
            MessageStatus.FAILED,
            error_code=ErrorCode.AGENT_ERROR,
            error_message="The assistant could not finish this reply.",
        )
        return
    agent_task.cancel()  # cancels its upstream call too: the provider's stream is closed
    await asyncio.gather(agent_task, return_exceptions=True)
    if lost.is_set():
        logger.warning("Reply %s was taken over by the sweeper; this worker stops writing", reply.id)
        return
    if stop.is_set():
        await recorder.finish(MessageStatus.CANCELLED, reason="cancelled by the visitor")
        return
    await recorder.finish(
        MessageStatus.FAILED,
        error_code=ErrorCode.STREAM_TIMEOUT,
        error_message=f"The reply took longer than {tenant.max_stream_seconds} s and was stopped.",
    )


async def start_next_in_session(session_id: uuid.UUID) -> None:
    """Start the session's oldest queued reply, if any (double-texting ``enqueue`` and ``interrupt``)."""
    next_id = await db(selectors.reply_next_queued)(session_id=session_id)
    if next_id is not None:
        start_detached(next_id)


def start_detached(reply_id: uuid.UUID) -> None:
    """Run a reply as a task of this worker's event loop, outliving the request that started it.

    The task gets a fresh context: it must not borrow the request's thread-sensitive executor, which ends with the
    request.
    """
    task = asyncio.get_running_loop().create_task(run_reply(reply_id=reply_id), context=contextvars.Context())
    _detached.add(task)
    task.add_done_callback(_detached.discard)


async def drain() -> None:
    """Wait for every detached run of this process to end (a one-shot sweeper exits only then)."""
    while _detached:
        await asyncio.gather(*list(_detached), return_exceptions=True)


async def run_until_finished(reply_id: uuid.UUID, *, poll_interval: float = 0.2) -> None:
    """Batch mode: run the reply here and wait for its end, also when it must first wait behind another reply."""
    while True:
        await run_reply(reply_id=reply_id)
        status = await db(selectors.message_status)(message_id=reply_id)
        if status not in {MessageStatus.QUEUED, MessageStatus.RUNNING}:
            return
        await asyncio.sleep(poll_interval)


async def wait_until_finished(reply_id: uuid.UUID, *, seconds: float, poll_interval: float = 0.2) -> None:
    """Batch mode for a reply another agent runs: wait for its end, or ``seconds`` at most."""
    deadline = asyncio.get_running_loop().time() + seconds
    while asyncio.get_running_loop().time() < deadline:
        status = await db(selectors.message_status)(message_id=reply_id)
        if status not in {MessageStatus.QUEUED, MessageStatus.RUNNING}:
            return
        await asyncio.sleep(poll_interval)


async def cancel(reply_id: uuid.UUID) -> services.CancelOutcome:
    """Stop a reply wherever it runs (idempotent): a queued one ends here, a running one is told to stop."""
    outcome, events = await db(services.reply_cancel)(reply_id=reply_id)
    if outcome == services.CancelOutcome.CANCELLED:
        session_id = await db(selectors.message_session_id)(message_id=reply_id)
        await fanout.publish(events, session_id=session_id)
    elif outcome == services.CancelOutcome.REQUESTED:
        await signal_stop(reply_id)
    return outcome


async def signal_stop(reply_id: uuid.UUID) -> None:
    """Tell the runner of a reply flagged for cancel to stop: directly if it runs here, else through the layer."""
    local = _stops.get(reply_id)
    if local is not None:
        local.set()
    else:
        await fanout.request_stop(reply_id)

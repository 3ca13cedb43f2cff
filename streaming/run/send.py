"""Sending a visitor's message: store it, publish what was stored, and run or schedule the reply
(docs/delivery.md, "Running a message"). Every transport sends through ``send_message``."""

from __future__ import annotations

from django.utils import timezone

from chat.models import ChatSession, Delivery
from chat.services import Submitted, message_submit, reply_time_out
from core.db_bridge import db
from streaming.live import fanout
from streaming.run import runner
from tenants.models import Agent


async def send_message(
    *, session: ChatSession, content: str, client_message_id: str | None, delivery: str
) -> Submitted:
    """Store the message; batch runs the reply here to its end, every other mode runs it as a task of this worker.
    For a tenant whose agent is its own (``external``), nothing runs here: its agents are told a reply is queued and
    claim it (batch waits for its end, up to the tenant's ``max_stream_seconds``).

    ``session`` must have its tenant loaded: its limits and policies are read from it, never fetched again. A
    repeated ``client_message_id`` starts nothing new: the claim inside the runner makes a second start a no-op, and
    it revives a reply whose worker died before starting it.
    """
    submitted = await db(message_submit)(
        session=session, content=content, client_message_id=client_message_id, delivery=delivery
    )
    await fanout.publish(submitted.events, session_id=session.id)  # committed: message_submit's transaction ended
    for reply_id in submitted.interrupted:
        await runner.signal_stop(reply_id)
    tenant = session.tenant
    if tenant.agent == Agent.EXTERNAL:  # the tenant's own agent claims it (docs/agents.md)
        if submitted.created:
            await fanout.announce_queued(tenant_id=tenant.pk)
        if delivery == Delivery.BATCH:
            await runner.wait_until_finished(submitted.reply.id, seconds=tenant.max_stream_seconds)
            # Waited the limit out: a reply its agent has not finished ends now, as the sweeper would end it.
            ended = await db(reply_time_out)(reply_id=submitted.reply.id, now=timezone.now(), waited=True)
            await fanout.publish([ended] if ended else [], session_id=session.id)
    elif delivery == Delivery.BATCH:
        await runner.run_until_finished(submitted.reply.id)
    else:
        runner.start_detached(submitted.reply.id)
    return submitted

"""Sending a visitor's message: store it, apply double-texting, and run or schedule the reply (docs/delivery.md)."""

from __future__ import annotations

from chat.models import ChatSession, Delivery
from chat.services import Submitted, message_submit
from streaming import runner
from streaming.db import db


async def send_message(
    *, session: ChatSession, content: str, client_message_id: str | None, delivery: str
) -> Submitted:
    """Store the message; batch runs the reply here to its end, every other mode runs it as a task of this worker.

    A repeated ``client_message_id`` starts nothing new: the claim inside the runner makes a second start a no-op,
    and it revives a reply whose worker died before starting it.
    """
    submitted = await db(message_submit)(
        session=session, content=content, client_message_id=client_message_id, delivery=delivery
    )
    for reply_id in submitted.interrupted:
        await runner.signal_stop(reply_id)
    if delivery == Delivery.BATCH:
        await runner.run_until_finished(submitted.reply.id)
    else:
        runner.start_detached(submitted.reply.id)
    return submitted

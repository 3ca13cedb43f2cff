"""Publishing: stored events reach each reply's own followers, whatever the batch they were published in."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from asgiref.sync import sync_to_async

from chat import services
from chat.events import EventType
from chat.models import ChatSession
from streaming.live import fanout
from streaming.live.reader import Heartbeat, follow
from tenants.models import DoubleTexting, Tenant

pytestmark = [pytest.mark.django_db(transaction=True)]


async def test_an_interrupt_that_cancels_several_queued_replies_tells_each_replys_followers(tenant: Tenant) -> None:
    tenant.double_texting = DoubleTexting.ENQUEUE
    session = await sync_to_async(ChatSession.objects.create)(tenant=tenant)
    queued = [
        (await sync_to_async(services.message_submit)(session=session, content=f"question {n}")).reply for n in range(3)
    ]
    following = [asyncio.Event() for _ in queued]

    async def last_event(reply_id: uuid.UUID, caught_up: asyncio.Event) -> str:
        async for item in follow(reply_id, 0, heartbeat=30, recheck=30):  # live events only, for 30 s
            if isinstance(item, Heartbeat):
                continue
            caught_up.set()  # subscribed, and past the stored message.started
            if item.is_terminal:
                return item.type
        raise AssertionError("the log ended without a terminal event")

    followers = [asyncio.create_task(last_event(r.id, f)) for r, f in zip(queued, following, strict=True)]
    await asyncio.wait_for(asyncio.gather(*(f.wait() for f in following)), timeout=5)
    tenant.double_texting = DoubleTexting.INTERRUPT
    submitted = await sync_to_async(services.message_submit)(session=session, content="never mind, this instead")
    await fanout.publish(submitted.events, session_id=session.id)  # one call, with events of four replies

    assert {event.message_id for event in submitted.events} == {*(r.id for r in queued), submitted.reply.id}
    ended = await asyncio.wait_for(asyncio.gather(*followers), timeout=5)
    assert ended == [EventType.MESSAGE_CANCELLED] * 3

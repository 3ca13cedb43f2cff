"""``follow``: from any cursor, with live events dropped, repeated or racing the catch-up, exactly the stored log."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import async_to_sync
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chat import services
from chat import services as chat_services
from chat.events import EventType, LoggedEvent
from chat.models import ChatSession
from core.db_bridge import db
from streaming.live import fanout
from streaming.live.reader import Heartbeat, follow
from tenants.models import Tenant

pytestmark = [pytest.mark.django_db(transaction=True)]

TOTAL = 12


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_follow_yields_exactly_the_stored_sequence(tenant: Tenant, data: st.DataObject) -> None:
    stored_first = data.draw(st.integers(min_value=1, max_value=TOTAL - 1), label="stored before following")
    cut = data.draw(st.integers(min_value=0, max_value=stored_first), label="cursor")
    copies = data.draw(st.lists(st.integers(0, 2), min_size=TOTAL, max_size=TOTAL), label="live copies per event")
    copies[-1] = max(copies[-1], 1)  # the terminal event is published at least once
    replays = data.draw(st.lists(st.integers(1, TOTAL), max_size=4), label="old events published again")

    session = ChatSession.objects.create(tenant=tenant)
    reply = chat_services.message_submit(session=session, content="hi").reply  # seq 1: message.started

    def store(seq: int) -> LoggedEvent:
        kind = EventType.MESSAGE_COMPLETED if seq == TOTAL else EventType.TEXT_DELTA
        (event,) = services.log_append(message_id=reply.id, first_seq=seq, items=[(kind, {"delta": str(seq)})])
        return event

    written = {seq: store(seq) for seq in range(2, stored_first + 1)}

    async def scenario() -> list[int]:
        seen: list[int] = []

        async def consume() -> None:
            async for item in follow(reply.id, cut, heartbeat=30, recheck=30):
                if not isinstance(item, Heartbeat):
                    seen.append(item.seq)

        consumer = asyncio.create_task(consume())
        await asyncio.sleep(0)
        for seq in range(stored_first + 1, TOTAL + 1):
            written[seq] = await db(store)(seq)
            for _ in range(copies[seq - 1]):
                await fanout.publish([written[seq]], session_id=session.id)
            for old in replays:
                if old in written and old < seq:
                    await fanout.publish([written[old]], session_id=session.id)
        await asyncio.wait_for(consumer, timeout=15)
        return seen

    assert async_to_sync(scenario)() == list(range(cut + 1, TOTAL + 1))

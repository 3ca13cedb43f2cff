"""Open-stream slots: the one owner of a stream's place within its tenant's limits, for every transport
(docs/security.md, "Limits").

A ``StreamSlotHold`` is one open stream's claim on a slot in its session's pool and one in its tenant's
(``max_streams_per_session``, ``max_concurrent_streams``; the pools are ``core.limits``'s leases):

- ``await hold.take()``: take the slot, or raise 429 ``TOO_MANY_STREAMS`` holding nothing. Views take it before they
  store or send anything, so a refused stream leaves nothing behind.
- ``async with hold:``: keep the slot renewed while the stream is open (taking it first if it was not taken), and give
  it back however the block ends. The response body of an SSE stream and the WebSocket consumer run their whole life
  inside it.
- ``await hold.release()``: give it back now (idempotent), for a view that took a slot and then does not stream.

Renewal starts only inside ``async with``: a slot taken for a response whose body never starts (the client left
while the view ran) is not renewed, so its lease lapses after ``core.limits.SLOT_LEASE_SECONDS``.
"""

from __future__ import annotations

import asyncio
import logging

import redis
from asgiref.sync import sync_to_async

from chat.models import ChatSession
from core.limits import SLOT_LEASE_SECONDS, StreamSlot, stream_slot_take

logger = logging.getLogger(__name__)


class StreamSlotHold:
    """One open stream's slot in its session's and tenant's pools, from ``take`` to its release."""

    def __init__(self, session: ChatSession) -> None:
        self._session = session  # its tenant loaded with it: no query
        self._slot: StreamSlot | None = None
        self._renewer: asyncio.Task[None] | None = None

    async def take(self) -> None:
        """Take the slot (once); 429 ``TOO_MANY_STREAMS`` if the session or the tenant has none free."""
        if self._slot is None:
            tenant = self._session.tenant
            self._slot = await sync_to_async(stream_slot_take, thread_sensitive=False)(
                tenant_id=tenant.pk,
                session_id=self._session.id,
                per_session=tenant.max_streams_per_session,
                per_tenant=tenant.max_concurrent_streams,
            )

    async def release(self) -> None:
        """Stop renewing and give the slot back; nothing happens if it is not held."""
        if self._renewer is not None:
            self._renewer.cancel()
            self._renewer = None
        slot, self._slot = self._slot, None
        if slot is not None:
            await asyncio.shield(sync_to_async(slot.release, thread_sensitive=False)())

    async def __aenter__(self) -> StreamSlotHold:
        await self.take()
        assert self._slot is not None  # noqa: S101 - take() set it or raised
        self._renewer = asyncio.create_task(_renew_forever(self._slot))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.release()


async def _renew_forever(slot: StreamSlot) -> None:
    while True:
        await asyncio.sleep(SLOT_LEASE_SECONDS / 3)
        try:
            await sync_to_async(slot.renew, thread_sensitive=False)()
        except redis.RedisError:
            logger.warning("Could not renew a stream slot; it lapses unless the next renewal works")

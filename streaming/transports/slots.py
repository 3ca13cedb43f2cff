"""Open-stream slots: the one owner of a stream's place within its tenant's limits, for every transport
(docs/security.md, "Limits").

``async with stream_slot(session):`` takes a slot in the session's pool and one in the tenant's
(``max_streams_per_session``, ``max_concurrent_streams``) or raises 429 ``TOO_MANY_STREAMS`` holding nothing; keeps
both renewed while the block runs; and gives them back however it ends. If the worker dies, the slots lapse with
their lease (``core.limits``). A stream whose response outlives the view enters it in an ``AsyncExitStack`` and hands
the stack to the response body (``pop_all``), so the slot is taken before anything is stored or sent.
"""

from __future__ import annotations

from chat.models import ChatSession
from core.limits import HeldStreamSlot


def stream_slot(session: ChatSession) -> HeldStreamSlot:
    """``async with stream_slot(session):`` holds a slot for one more open stream of ``session`` (its tenant loaded)
    while the block runs."""
    tenant = session.tenant
    return HeldStreamSlot(
        tenant_id=tenant.pk,
        session_id=session.id,
        per_session=tenant.max_streams_per_session,
        per_tenant=tenant.max_concurrent_streams,
    )

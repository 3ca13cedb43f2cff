"""Server-Sent Events of one reply (docs/delivery.md, "Server-Sent Events"): the response every SSE route returns —
``GET /api/v1/messages/{id}/stream``, ``POST /api/v1/sessions/{id}/messages`` with ``mode: "stream"`` and
EventSource start (``GET /api/v1/stream``).

A stream holds an open-stream slot (``streaming.transports.slots``) for as long as it is open, follows the log
through ``streaming.live.reader.follow``, shows only what the tenant's thought visibility allows, and sends a comment
as heartbeat when it is quiet. With the tenant's ``cancel_on_disconnect``, the last viewer leaving a running reply
cancels it. Callers check that the session may stream (``chat.access.require_streaming``) once, before calling.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass

from django.core.cache import cache
from django.http import HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase

from chat.models import ChatSession, Delivery, Message
from chat.selectors import log_last_seq, reply_for_client_message
from chat.visibility import redact_event
from core import metrics
from core.db_bridge import db, release_request_thread
from core.errors import ApiError, ErrorCode
from streaming.live.reader import Heartbeat, check_cursor, follow
from streaming.run import runner
from streaming.run.send import send_message
from streaming.transports.encode import SSE_HEARTBEAT, SSE_PREAMBLE, sse_frame
from streaming.transports.slots import StreamSlotHold

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Stream:
    """What an open stream keeps of its message while it waits: a few values, not the message, session and tenant
    rows (an idle stream's memory is mostly what it holds on to; docs/benchmarks.md)."""

    message_id: uuid.UUID
    tenant: str
    visibility: str
    cancel_on_disconnect: bool

    @classmethod
    def of(cls, message: Message, session: ChatSession) -> _Stream:
        tenant = session.tenant
        return cls(message.id, tenant.slug, tenant.thought_visibility, tenant.cancel_on_disconnect)


async def _viewer_joined(message_id: uuid.UUID) -> bool:
    """Count one more viewer of the reply; False if the cache (Redis) is away, and then the stream is not counted."""
    key = f"brook:viewers:{message_id.hex}"
    try:
        await cache.aadd(key, 0, timeout=3600)
        await cache.aincr(key)
    except Exception:
        logger.warning("Could not count a viewer of reply %s; leaving will not cancel it", message_id, exc_info=True)
        return False
    return True


async def _viewer_left(message_id: uuid.UUID) -> None:
    """With ``cancel_on_disconnect``, the last viewer leaving a running reply cancels it. If the count is gone (a
    Redis restart forgot it) nobody is known to watch any more, so the reply is cancelled; if Redis is away, not."""
    key = f"brook:viewers:{message_id.hex}"
    try:
        remaining = await cache.adecr(key)
    except ValueError:
        remaining = 0
    except Exception:
        logger.warning("Could not count a viewer leaving reply %s; not cancelling it", message_id, exc_info=True)
        return
    if remaining <= 0:
        logger.info("Last viewer left reply %s; cancelling it (tenant setting)", message_id)
        await runner.cancel(message_id)


async def _sse_body(stream: _Stream, after: int, slot: StreamSlotHold) -> AsyncIterator[bytes]:
    async with slot:  # renewed while the stream is open, given back when it ends
        with metrics.active_stream(tenant=stream.tenant, transport="sse"):
            yield SSE_PREAMBLE  # headers leave now, before the model's first token
            await release_request_thread()
            watch = stream.cancel_on_disconnect and await _viewer_joined(stream.message_id)
            finished = False
            try:
                async for item in follow(stream.message_id, after):
                    if isinstance(item, Heartbeat):
                        yield SSE_HEARTBEAT
                        continue
                    shown = redact_event(item, stream.visibility)
                    if shown is not None:
                        yield sse_frame(shown)
                    finished = item.is_terminal
            finally:
                if watch and not finished:
                    await _viewer_left(stream.message_id)


async def sse_response(
    session: ChatSession, message: Message, after: int, *, slot: StreamSlotHold | None = None
) -> HttpResponseBase:
    """A ``text/event-stream`` of ``message``'s events after ``after``; 204 once the client has them all.

    ``session`` is the message's, its tenant loaded. The stream takes a slot, or is handed ``slot`` already taken;
    when no stream starts (an error, a 204) the slot is given back here, otherwise the body owns it
    (``streaming.transports.slots``).
    """
    async with AsyncExitStack() as undo:
        if slot is not None:
            undo.push_async_callback(slot.release)
        last = await db(log_last_seq)(message_id=message.id)
        check_cursor(message, after, last)
        if message.is_finished and after >= last:
            return HttpResponse(status=204)  # EventSource stops reconnecting on 204
        if slot is None:
            slot = StreamSlotHold(session)
            await slot.take()
            undo.push_async_callback(slot.release)
        body = _sse_body(_Stream.of(message, session), after, slot)
        undo.pop_all()  # the body owns the slot now
    response = StreamingHttpResponse(body, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


async def send_and_stream(
    *, session: ChatSession, content: str, client_message_id: str | None, after: int = 0
) -> HttpResponseBase:
    """Send the visitor's message and stream its reply (fetch streaming, EventSource start).

    The slot is taken first: a 429 ``TOO_MANY_STREAMS`` leaves nothing stored or half-started. A repeated
    ``client_message_id`` streams the first reply again, after ``after``.
    """
    if after and await db(reply_for_client_message)(session=session, client_message_id=client_message_id or "") is None:
        raise ApiError(  # a cursor into a reply that does not exist yet: refuse before storing anything
            ErrorCode.STREAM_INVALID_PARAMETERS,
            f"The cursor {after} is past the end of this message's log: there is no message with this id yet.",
            details={"last_seq": 0},
        )
    slot = StreamSlotHold(session)
    await slot.take()
    try:
        submitted = await send_message(
            session=session, content=content, client_message_id=client_message_id, delivery=Delivery.STREAM
        )
    except BaseException:
        await slot.release()
        raise
    return await sse_response(session, submitted.reply, after, slot=slot)

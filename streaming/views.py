"""Live delivery over HTTP: polling (with long polls), Server-Sent Events, and EventSource start (docs/delivery.md).

Async views: a stream or a long poll waits on the event loop, not in a thread. Each reads the message's log through
``streaming.delivery``; who may read is decided by ``chat.access`` as for every other route.
"""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.views.decorators.http import require_GET

from chat.access import get_message_or_404, get_session_or_404, require_credential, require_streaming
from chat.models import ChatSession, Delivery, Message
from chat.selectors import message_get_with_steps
from chat.serializers import MessageSerializer
from chat.tokens import SessionCredential
from config.errors import ApiError, ErrorCode
from streaming import metrics, runner
from streaming.db import db, release_request_thread
from streaming.delivery import Heartbeat, follow, stored_after, wait_for_events
from streaming.dispatch import send_message
from streaming.selectors import fill_live_content, log_last_seq
from streaming.visibility import redact_event, redact_events
from tenants.limits import StreamSlot, holding, stream_slot_take

logger = logging.getLogger(__name__)

MAX_WAIT_SECONDS = 25.0
SSE_PREAMBLE = b": connected\n\nretry: 3000\n\n"
SSE_HEARTBEAT = b": ping\n\n"

View = Callable[..., Coroutine[Any, Any, HttpResponseBase]]


def json_errors(view: View) -> View:
    """Render ``ApiError`` as Brook's ``{"code", "message"}`` body, as DRF views do."""

    @functools.wraps(view)
    async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        try:
            return await view(request, *args, **kwargs)
        except ApiError as error:
            return error.response()

    return wrapper


def _credential(request: HttpRequest) -> SessionCredential:
    return require_credential(
        authorization=request.headers.get("Authorization", ""), token_param=request.GET.get("token", "")
    )


def parse_cursor(raw: str | None, *, name: str) -> int:
    """A cursor is a whole number ≥ 0 (0 = from the start); anything else is a 400 ``STREAM_003``."""
    if raw is None or raw == "":
        return 0
    if not raw.isdigit() or len(raw) > 10:
        raise ApiError(ErrorCode.STREAM_INVALID_PARAMETERS, f"{name} must be a whole number ≥ 0, not {raw[:20]!r}.")
    return int(raw)


def _parse_wait(raw: str | None) -> float:
    if not raw:
        return 0.0
    try:
        wait = float(raw)
    except ValueError:
        raise ApiError(ErrorCode.STREAM_INVALID_PARAMETERS, "wait must be a number of seconds (0-25).") from None
    if not 0 <= wait <= MAX_WAIT_SECONDS:
        raise ApiError(ErrorCode.STREAM_INVALID_PARAMETERS, "wait must be between 0 and 25 seconds.")
    return wait


def _check_cursor(message: Message, after: int, last: int) -> None:
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


def message_body(message_id: Any, visibility: str) -> dict[str, Any]:
    """The message as polling shows it: content and reasoning so far, from its log while it runs."""
    (message,) = fill_live_content([message_get_with_steps(message_id=message_id)])
    return dict(MessageSerializer(message, context={"visibility": visibility}).data)


@require_GET
@json_errors
async def message_detail(request: HttpRequest, message_id: str) -> HttpResponseBase:
    """Polling: the message, its events after ``after``, and ``next``; ``wait`` long-polls for the first event."""
    credential = _credential(request)
    after = parse_cursor(request.GET.get("after"), name="after")
    wait = _parse_wait(request.GET.get("wait"))
    message = await db(get_message_or_404)(credential, message_id)
    last = await db(log_last_seq)(message_id=message.id)
    if message.log_compacted_at is None and after > last:
        _check_cursor(message, after, last)
    events = await stored_after(message.id, after)
    if not events and wait > 0 and not message.is_finished:
        with metrics.active_stream(tenant=message.session.tenant.slug, transport="long_poll"):
            await release_request_thread()
            events = await wait_for_events(message.id, after, wait)
    visibility = message.session.tenant.thought_visibility
    body = await db(message_body)(message.id, visibility)
    cursor = events[-1].seq if events else after
    done = body["status"] not in {"queued", "running"} and (
        message.log_compacted_at is not None or cursor >= await db(log_last_seq)(message_id=message.id)
    )
    body |= {
        "events": [event.as_dict() for event in redact_events(events, visibility)],
        "next": cursor,
        "done": done,
        "log_expired": message.log_compacted_at is not None,
        "poll_after_ms": None if done else (250 if events else 1000),
    }
    return JsonResponse(body)


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


def stream_slot(session: ChatSession) -> StreamSlot:
    """A slot for one more open stream of the session, within the tenant's limits, or 429 ``TOO_MANY_STREAMS``."""
    tenant = session.tenant
    return stream_slot_take(
        tenant_id=tenant.pk,
        session_id=session.id,
        per_session=tenant.max_streams_per_session,
        per_tenant=tenant.max_concurrent_streams,
    )


@dataclass(frozen=True, slots=True)
class _Stream:
    """What an open stream keeps of its message while it waits: a few values, not the message, session and tenant
    rows (an idle stream's memory is mostly what it holds on to; docs/benchmarks.md)."""

    message_id: uuid.UUID
    tenant: str
    visibility: str
    cancel_on_disconnect: bool

    @classmethod
    def of(cls, message: Message) -> _Stream:
        tenant = message.session.tenant
        return cls(message.id, tenant.slug, tenant.thought_visibility, tenant.cancel_on_disconnect)


async def _sse_body(stream: _Stream, after: int, slot: StreamSlot) -> AsyncIterator[bytes]:
    with metrics.active_stream(tenant=stream.tenant, transport="sse"):
        async with holding(slot):
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
                        yield shown.sse()
                    finished = item.is_terminal
            finally:
                if watch and not finished:
                    await _viewer_left(stream.message_id)


async def astream_slot(session: ChatSession) -> StreamSlot:
    return await sync_to_async(stream_slot, thread_sensitive=False)(session)


async def arelease(slot: StreamSlot) -> None:
    await sync_to_async(slot.release, thread_sensitive=False)()


async def sse_response(message: Message, after: int, *, slot: StreamSlot | None = None) -> HttpResponseBase:
    """A ``text/event-stream`` of the message's events after ``after``; 204 once the client has them all.

    The stream holds ``slot`` (or takes one) until it ends; the slot is given back here when no stream starts (an error,
    a 204). A slot whose stream is returned but never iterated lapses on its own.
    """
    body = None
    try:
        require_streaming(message.session)
        last = await db(log_last_seq)(message_id=message.id)
        _check_cursor(message, after, last)
        if not (message.is_finished and after >= last):
            body = _sse_body(_Stream.of(message), after, slot or await astream_slot(message.session))
            slot = None  # the stream owns it now
    finally:
        if slot is not None:
            await arelease(slot)
    if body is None:
        return HttpResponse(status=204)  # EventSource stops reconnecting on 204
    response = StreamingHttpResponse(body, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


def _last_event_id(request: HttpRequest) -> int:
    header = request.headers.get("Last-Event-ID")
    if header is not None and header != "":
        return parse_cursor(header.strip(), name="Last-Event-ID")
    return parse_cursor(request.GET.get("last_event_id"), name="last_event_id")


@require_GET
@json_errors
async def message_stream(request: HttpRequest, message_id: str) -> HttpResponseBase:
    """SSE of one message, resuming after ``Last-Event-ID`` (or ``last_event_id``)."""
    credential = _credential(request)
    after = _last_event_id(request)
    message = await db(get_message_or_404)(credential, message_id)
    return await sse_response(message, after)


@require_GET
@json_errors
async def stream_start(request: HttpRequest) -> HttpResponseBase:
    """EventSource start (seed 004): send ``user_input`` as message ``message_id`` and stream the reply.

    Idempotent by ``message_id``: EventSource's automatic reconnect resumes the same reply after Last-Event-ID.
    """
    params = {name: request.GET.get(name, "") for name in ("tenant", "session_id", "message_id", "user_input")}
    missing = [name for name in ("tenant", "session_id", "message_id", "user_input") if not params[name]]
    if missing:
        raise ApiError(ErrorCode.STREAM_INVALID_PARAMETERS, f"Missing parameters: {', '.join(missing)}.")
    if len(params["message_id"]) > 128:
        raise ApiError(ErrorCode.STREAM_INVALID_PARAMETERS, "message_id is longer than 128 characters.")
    credential = _credential(request)
    after = _last_event_id(request)
    session = await db(get_session_or_404)(credential, params["session_id"])
    if session.tenant.public_key != params["tenant"]:
        raise ApiError(ErrorCode.SESSION_NOT_FOUND, "No such session.", status_code=404)
    require_streaming(session)
    slot = await astream_slot(session)
    try:
        submitted = await send_message(
            session=session,
            content=params["user_input"],
            client_message_id=params["message_id"],
            delivery=Delivery.STREAM,
        )
        reply = await db(get_message_or_404)(credential, str(submitted.reply.id))
    except BaseException:
        await arelease(slot)
        raise
    return await sse_response(reply, after, slot=slot)

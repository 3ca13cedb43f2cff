"""The reply routes over HTTP (docs/api.md, docs/delivery.md): send a message (batch, poll or stream), cancel a reply,
poll its log (with long polls), stream it as Server-Sent Events, and EventSource start.

Thin: each reads its credential and input, finds the session or message through ``chat.access`` (another tenant's
ids find nothing: 404), and hands over to ``streaming.run.send`` (sending), ``streaming.transports.sse`` (streams) or
``streaming.live.reader`` (polling). Streams and long polls wait on the event loop, not in a thread.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from chat import selectors
from chat.access import (
    SessionScopedAPIView,
    get_message_or_404,
    get_session_or_404,
    require_credential,
    require_streaming,
)
from chat.models import Delivery, Role
from chat.selectors import fill_live_content, log_last_seq, message_get_with_steps
from chat.serializers import MessageSerializer
from chat.services import CancelOutcome
from chat.tokens import SessionCredential
from chat.visibility import redact_events
from core import metrics
from core.db_bridge import db, release_request_thread, wait_released
from core.errors import ApiError, ErrorCode
from core.serializers import ErrorSerializer, TextField, error_responses
from streaming.live.reader import check_cursor, stored_after, wait_for_events
from streaming.run import runner
from streaming.run.send import send_message
from streaming.transports.encode import poll_event
from streaming.transports.sse import send_and_stream, sse_response

MAX_WAIT_SECONDS = 25.0

_ERRORS = error_responses(400, 401, 404, 409, 429)

View = Callable[..., Coroutine[Any, Any, HttpResponseBase]]


def api_get(view: View) -> View:
    """An async GET-only API route: any other method is 405 ``METHOD_NOT_ALLOWED`` (with ``Allow: GET``), and
    ``ApiError`` renders as Brook's ``{"code", "message"}`` body, as DRF views do. No CSRF check: these routes
    authenticate with tokens, never cookies (docs/security.md)."""

    @functools.wraps(view)
    async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if request.method != "GET":
            response = ApiError(
                ErrorCode.METHOD_NOT_ALLOWED, f"{request.method} is not allowed here; use GET.", status_code=405
            ).response()
            response["Allow"] = "GET"
            return response
        try:
            return await view(request, *args, **kwargs)
        except ApiError as error:
            return error.response()

    return csrf_exempt(wrapper)


def _credential(request: HttpRequest) -> SessionCredential:
    return require_credential(
        authorization=request.headers.get("Authorization", ""), token_param=request.GET.get("token", "")
    )


def message_urls(request: Request, message_id: str) -> dict[str, str]:
    base = f"/api/v1/messages/{message_id}"
    return {
        "poll": request.build_absolute_uri(base),
        "stream": request.build_absolute_uri(f"{base}/stream"),
        "cancel": request.build_absolute_uri(f"{base}/cancel"),
    }


class MessageCreateApi(SessionScopedAPIView):
    """Send the visitor's message. ``batch``: 200 with the finished reply. ``poll``: 202 with where to poll.
    ``stream``: the reply's events as ``text/event-stream`` (fetch streaming)."""

    class MessageCreateInputSerializer(serializers.Serializer[Any]):
        content = TextField(trim_whitespace=False, allow_blank=True)
        client_message_id = TextField(max_length=128, required=False, allow_blank=True, default="")
        mode = serializers.ChoiceField(choices=["batch", "poll", "stream"], default="batch")

    class MessageAcceptedSerializer(serializers.Serializer[Any]):
        id = serializers.UUIDField()
        status = serializers.CharField()
        reply_to = serializers.UUIDField()
        urls = serializers.DictField(child=serializers.URLField())

    @extend_schema(
        request=MessageCreateInputSerializer,
        responses={
            200: MessageSerializer,
            202: MessageAcceptedSerializer,
            **_ERRORS,
            403: OpenApiResponse(ErrorSerializer),
        },
    )
    def post(self, request: Request, session_id: str) -> HttpResponseBase:
        session = self.get_session(session_id)  # the one read of the session and its tenant
        data = self.MessageCreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        mode = data.validated_data["mode"]
        message = {
            "session": session,
            "content": data.validated_data["content"],
            "client_message_id": data.validated_data["client_message_id"] or None,
        }
        if mode == Delivery.STREAM:
            require_streaming(session)
            return wait_released(send_and_stream)(**message)
        submitted = wait_released(send_message)(**message, delivery=mode)
        if mode == Delivery.BATCH:
            reply = selectors.message_get_with_steps(message_id=submitted.reply.id)
            return Response(MessageSerializer(reply, context={"visibility": session.tenant.thought_visibility}).data)
        reply = submitted.reply
        body = {
            "id": reply.id,
            "status": reply.status,
            "reply_to": reply.reply_to_id,
            "urls": message_urls(request, str(reply.id)),
        }
        return Response(self.MessageAcceptedSerializer(body).data, status=status.HTTP_202_ACCEPTED)


class MessageCancelApi(SessionScopedAPIView):
    """Stop a reply, wherever it runs; idempotent. 202 while it stops, 200 once it has ended."""

    class MessageCancelSerializer(serializers.Serializer[Any]):
        id = serializers.UUIDField()
        status = serializers.CharField()
        outcome = serializers.CharField()

    @extend_schema(request=None, responses={200: MessageCancelSerializer, 202: MessageCancelSerializer, **_ERRORS})
    def post(self, request: Request, message_id: str) -> Response:
        message = self.get_message(message_id)
        if message.role != Role.ASSISTANT:
            raise ApiError(ErrorCode.INVALID_INPUT, "Only an assistant reply can be cancelled.")
        outcome = wait_released(runner.cancel)(message.id)
        message.refresh_from_db(fields=["status"])
        body = {"id": message.id, "status": message.status, "outcome": outcome}
        code = status.HTTP_202_ACCEPTED if outcome == CancelOutcome.REQUESTED else status.HTTP_200_OK
        return Response(self.MessageCancelSerializer(body).data, status=code)


def parse_cursor(raw: str | None, *, name: str) -> int:
    """A cursor is a whole number ≥ 0 (0 = from the start); anything else is a 400 ``STREAM_003``."""
    if raw is None or raw == "":
        return 0
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 10:  # ASCII only: "²".isdigit() is true
        raise ApiError(ErrorCode.STREAM_INVALID_PARAMETERS, f"{name} must be a whole number ≥ 0, not {raw[:20]!r}.")
    return int(raw)


def _parse_wait(raw: str | None) -> float:
    if not raw:
        return 0.0
    try:
        if not raw.isascii():  # float() reads other scripts' digits too
            raise ValueError(raw)
        wait = float(raw)
    except ValueError:
        raise ApiError(ErrorCode.STREAM_INVALID_PARAMETERS, "wait must be a number of seconds (0-25).") from None
    if not 0 <= wait <= MAX_WAIT_SECONDS:
        raise ApiError(ErrorCode.STREAM_INVALID_PARAMETERS, "wait must be between 0 and 25 seconds.")
    return wait


def message_body(message_id: Any, visibility: str) -> dict[str, Any]:
    """The message as polling shows it: content and reasoning so far, from its log while it runs."""
    (message,) = fill_live_content([message_get_with_steps(message_id=message_id)])
    return dict(MessageSerializer(message, context={"visibility": visibility}).data)


@api_get
async def message_detail(request: HttpRequest, message_id: str) -> HttpResponseBase:
    """Polling: the message, its events after ``after``, and ``next``; ``wait`` long-polls for the first event."""
    credential = _credential(request)
    after = parse_cursor(request.GET.get("after"), name="after")
    wait = _parse_wait(request.GET.get("wait"))
    message = await db(get_message_or_404)(credential, message_id)
    last = await db(log_last_seq)(message_id=message.id)
    if message.log_compacted_at is None and after > last:
        check_cursor(message, after, last)
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
        "events": [poll_event(event) for event in redact_events(events, visibility)],
        "next": cursor,
        "done": done,
        "log_expired": message.log_compacted_at is not None,
        "poll_after_ms": None if done else (250 if events else 1000),
    }
    return JsonResponse(body)


def _last_event_id(request: HttpRequest) -> int:
    header = request.headers.get("Last-Event-ID")
    if header is not None and header != "":
        return parse_cursor(header.strip(), name="Last-Event-ID")
    return parse_cursor(request.GET.get("last_event_id"), name="last_event_id")


@api_get
async def message_stream(request: HttpRequest, message_id: str) -> HttpResponseBase:
    """SSE of one message, resuming after ``Last-Event-ID`` (or ``last_event_id``)."""
    credential = _credential(request)
    after = _last_event_id(request)
    message = await db(get_message_or_404)(credential, message_id)
    require_streaming(message.session)
    return await sse_response(message.session, message, after)


@api_get
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
    return await send_and_stream(
        session=session, content=params["user_input"], client_message_id=params["message_id"], after=after
    )

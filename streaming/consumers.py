"""WebSocket delivery: every event of a session's replies, and messages, cancels and resumes from the client.

``/ws/v1/sessions/<id>/?token=<stream token>`` (docs/delivery.md, "WebSocket"). A browser's handshake must come
from one of the tenant's allowed origins, and the session must be in the streaming rollout. Frames out:
``{"type": "event", "message_id", "seq", "event", "data", "ts"}``, ``{"type": "message.accepted", ...}``,
``{"type": "error", "code", "message"}``. Frames in: ``message``, ``cancel`` and ``resume``. Per message, the consumer
keeps the last seq sent and fills gaps from the database, exactly as ``streaming.delivery.follow`` does, and re-reads
the database for unfinished replies every ``BROOK_STREAM_RECHECK_SECONDS`` (0.5 s while Redis is away), so a lost
publish or a Redis restart delays an event but never loses it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any
from urllib.parse import parse_qs

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from rest_framework import serializers

from chat.access import get_message_or_404, get_session_or_404, require_credential, require_streaming
from chat.models import ChatSession, Delivery, Message, MessageStatus
from chat.serializers import TextField
from chat.tokens import SessionCredential
from config.errors import ApiError, ErrorCode
from streaming import metrics, runner
from streaming.db import db
from streaming.delivery import DEGRADED_RECHECK_SECONDS, Cursor, admit, stored_after
from streaming.dispatch import send_message
from streaming.events import LoggedEvent, session_group
from streaming.selectors import log_last_seq
from streaming.views import astream_slot
from streaming.visibility import redact_event
from tenants.limits import holding
from tenants.origins import origin_check

logger = logging.getLogger(__name__)


class _MessageFrame(serializers.Serializer[Any]):
    content = TextField(trim_whitespace=False, allow_blank=True)
    client_message_id = TextField(max_length=128, required=False, allow_blank=True, default="")


class _CancelFrame(serializers.Serializer[Any]):
    message_id = TextField(max_length=64)


class _ResumeFrame(serializers.Serializer[Any]):
    message_id = TextField(max_length=64)
    after = serializers.IntegerField(min_value=0, default=0)


def _active_cursors(session_id: uuid.UUID) -> dict[uuid.UUID, int]:
    """Where live delivery starts for replies already under way when the socket opens: their current end."""
    active = Message.objects.filter(
        session_id=session_id, status__in=[MessageStatus.QUEUED, MessageStatus.RUNNING]
    ).values_list("id", flat=True)
    return {message_id: log_last_seq(message_id=message_id) for message_id in active}


class SessionConsumer(AsyncJsonWebsocketConsumer):  # type: ignore[misc]
    """One visitor's socket on one session."""

    credential: SessionCredential
    session: ChatSession

    async def connect(self) -> None:
        query = parse_qs(self.scope.get("query_string", b"").decode())
        headers = dict(self.scope.get("headers", []))
        try:
            self.credential = require_credential(
                authorization=headers.get(b"authorization", b"").decode(), token_param=query.get("token", [""])[0]
            )
            self.session = await db(get_session_or_404)(
                self.credential, self.scope["url_route"]["kwargs"]["session_id"]
            )
            origin_check(
                self.session.tenant, headers.get(b"origin", b"").decode("latin-1"), own_origin=self._own_origin(headers)
            )
            require_streaming(self.session)
            self.slot = await astream_slot(self.session)
        except ApiError as error:
            await self.accept()
            await self._error(error)
            await self.close(code=4000 + error.status_code)  # 4401, 4403, 4404, 4429
            return
        self.holding = holding(self.slot)
        await self.holding.__aenter__()
        self.counted = metrics.active_stream(tenant=self.session.tenant.slug, transport="websocket")
        self.counted.__enter__()
        self.cursors: dict[uuid.UUID, Cursor] = {}
        self.finished: set[uuid.UUID] = set()
        self.sending = asyncio.Lock()  # live events, rechecks and resumes advance the same cursors
        self.group = session_group(self.session.id)
        await self.channel_layer.group_add(self.group, self.channel_name)  # subscribe first, then read the ends
        for message_id, last in (await db(_active_cursors)(self.session.id)).items():
            self.cursors[message_id] = Cursor(last)
        await self.accept()
        self.rechecking = asyncio.create_task(self._recheck_forever())

    def _own_origin(self, headers: dict[bytes, bytes]) -> str:
        scheme = "https" if self.scope.get("scheme") == "wss" else "http"
        return f"{scheme}://{headers.get(b'host', b'').decode('latin-1')}"

    async def disconnect(self, code: int) -> None:
        if hasattr(self, "rechecking"):
            self.rechecking.cancel()
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)
        if hasattr(self, "holding"):
            await self.holding.__aexit__(None, None, None)
        if hasattr(self, "counted"):
            self.counted.__exit__(None, None, None)

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        if not hasattr(self, "group"):
            return
        if isinstance(content, dict) and content.get("invalid_json"):
            await self._error(ApiError(ErrorCode.INVALID_JSON, "The frame is not valid JSON."))
            return
        kind = content.get("type") if isinstance(content, dict) else None
        handlers = {"message": self._on_message, "cancel": self._on_cancel, "resume": self._on_resume}
        handler = handlers.get(kind) if isinstance(kind, str) else None
        try:
            if handler is None:
                raise ApiError(ErrorCode.INVALID_INPUT, "type must be one of: message, cancel, resume.")
            await handler(content)
        except ApiError as error:
            await self._error(error)
        except serializers.ValidationError as error:
            await self._error(ApiError(ErrorCode.INVALID_INPUT, f"Invalid {kind} frame: {error.detail}"))

    @classmethod
    async def decode_json(cls, text_data: str) -> Any:
        try:
            return await super().decode_json(text_data)
        except (ValueError, RecursionError):
            return {"type": None, "invalid_json": True}

    async def _error(self, error: ApiError) -> None:
        frame: dict[str, Any] = {"type": "error", "code": error.error_code.value, "message": error.message}
        if error.retry_after is not None:
            frame["retry_after"] = error.retry_after
        await self.send_json(frame)

    async def _on_message(self, content: dict[str, Any]) -> None:
        frame = _MessageFrame(data=content)
        frame.is_valid(raise_exception=True)
        submitted = await send_message(
            session=self.session,
            content=frame.validated_data["content"],
            client_message_id=frame.validated_data["client_message_id"] or None,
            delivery=Delivery.WEBSOCKET,
        )
        self.cursors.setdefault(submitted.reply.id, Cursor(0))
        await self.send_json(
            {
                "type": "message.accepted",
                "message_id": str(submitted.reply.id),
                "reply_to": str(submitted.reply.reply_to_id),
                "client_message_id": frame.validated_data["client_message_id"],
                "created": submitted.created,
            }
        )

    async def _message(self, raw_id: str) -> Message:
        return await db(get_message_or_404)(self.credential, raw_id)

    async def _on_cancel(self, content: dict[str, Any]) -> None:
        frame = _CancelFrame(data=content)
        frame.is_valid(raise_exception=True)
        message = await self._message(frame.validated_data["message_id"])
        outcome = await runner.cancel(message.id)
        await self.send_json({"type": "cancel.accepted", "message_id": str(message.id), "outcome": outcome})

    async def _on_resume(self, content: dict[str, Any]) -> None:
        frame = _ResumeFrame(data=content)
        frame.is_valid(raise_exception=True)
        message = await self._message(frame.validated_data["message_id"])
        after = frame.validated_data["after"]
        last = await db(log_last_seq)(message_id=message.id)
        if message.log_compacted_at is not None:
            raise ApiError(ErrorCode.LOG_EXPIRED, "This reply's event log has passed its retention period.")
        if after > last:
            raise ApiError(ErrorCode.STREAM_INVALID_PARAMETERS, f"after {after} is past the end of the log ({last}).")
        async with self.sending:
            self.cursors[message.id] = Cursor(after)
            self.finished.discard(message.id)
            await self._catch_up(message.id)

    async def log_events(self, message: dict[str, Any]) -> None:
        """Channel-layer handler: live events of a message of this session."""
        events = [LoggedEvent.from_wire(wire) for wire in message.get("events", [])]
        if not events:
            return
        message_id = events[0].message_id
        async with self.sending:
            cursor = self.cursors.setdefault(message_id, Cursor(0))
            for event in await admit(message_id, cursor, events):
                await self._send(event)

    async def _catch_up(self, message_id: uuid.UUID) -> None:
        """Send what the log holds past this socket's cursor for ``message_id`` (callers hold ``sending``)."""
        cursor = self.cursors[message_id]
        while True:
            batch = await stored_after(message_id, cursor.last)
            for event in batch:
                cursor.advance(event)
                await self._send(event)
            if not batch:
                return

    async def _recheck_forever(self) -> None:
        """Read the log of every unfinished reply this socket follows, in case live events were lost."""
        recheck = float(settings.BROOK_STREAM_RECHECK_SECONDS)
        while True:
            degraded = getattr(self.channel_layer, "degraded", False)
            await asyncio.sleep(min(recheck, DEGRADED_RECHECK_SECONDS) if degraded else recheck)
            try:
                async with self.sending:
                    for message_id in [m for m in self.cursors if m not in self.finished]:
                        await self._catch_up(message_id)
            except Exception:
                logger.exception("Re-reading the log for socket of session %s failed; trying again", self.session.id)

    async def _send(self, event: LoggedEvent) -> None:
        if event.is_terminal:
            self.finished.add(event.message_id)
        shown = redact_event(event, self.session.tenant.thought_visibility)
        if shown is None:
            return
        event = shown
        await self.send_json(
            {
                "type": "event",
                "message_id": str(event.message_id),
                "seq": event.seq,
                "event": event.type,
                "data": event.data,
                "ts": event.created_at.isoformat(),
            }
        )

"""WebSocket delivery: every event of a session's replies, and messages, cancels and resumes from the client.

``/ws/v1/sessions/<id>/?token=<stream token>`` (docs/delivery.md, "WebSocket"). A browser's handshake must come
from one of the tenant's allowed origins, and the session must be in the streaming rollout. Frames out:
``{"type": "event", "message_id", "seq", "event", "data", "ts"}``, ``{"type": "message.accepted", ...}``,
``{"type": "error", "code", "message"}``. Frames in: ``message``, ``cancel`` and ``resume``. The consumer follows
every reply of its session through the same reader as SSE and polling (``streaming.live.reader.LogReader``): live
events with gaps filled from the database, and a re-read of unfinished replies every
``BROOK_STREAM_RECHECK_SECONDS`` (0.5 s while Redis is away), so a lost publish or a Redis restart delays an event but
never loses it. Its open-stream slot is ``streaming.transports.slots``'s, like every other stream's.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any
from urllib.parse import parse_qs

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from rest_framework import serializers

from chat.access import get_message_or_404, get_session_or_404, require_credential, require_streaming
from chat.events import LoggedEvent
from chat.models import ChatSession, Delivery, Message
from chat.selectors import log_last_seq, replies_in_progress_cursors
from chat.tokens import SessionCredential
from chat.visibility import redact_event
from core import metrics
from core.db_bridge import db
from core.errors import ApiError, ErrorCode
from core.serializers import TextField
from streaming.live.fanout import session_group
from streaming.live.reader import LogReader, check_cursor, recheck_seconds
from streaming.run import runner
from streaming.run.send import send_message
from streaming.transports.encode import ws_frame
from streaming.transports.slots import StreamSlotHold
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
            self.held = AsyncExitStack()  # what the socket holds while open: its slot and its metric
            await self.held.enter_async_context(StreamSlotHold(self.session))
        except ApiError as error:
            await self.accept()
            await self._error(error)
            await self.close(code=4000 + error.status_code)  # 4401, 4403, 4404, 4429
            return
        self.held.enter_context(metrics.active_stream(tenant=self.session.tenant.slug, transport="websocket"))
        self.visibility = self.session.tenant.thought_visibility
        self.reader = LogReader(follows_new=True)
        self.sending = asyncio.Lock()  # live events, rechecks and resumes advance the same cursors
        self.group = session_group(self.session.id)
        await self.channel_layer.group_add(self.group, self.channel_name)  # subscribe first, then read the ends
        cursors = await db(replies_in_progress_cursors)(session_id=self.session.id)
        for message_id, last in cursors.items():
            self.reader.follow_from(message_id, last)
        await self.accept()
        self.rechecking = asyncio.create_task(self._recheck_forever())

    def _own_origin(self, headers: dict[bytes, bytes]) -> str:
        scheme = "https" if self.scope.get("scheme") == "wss" else "http"
        return f"{scheme}://{headers.get(b'host', b'').decode('latin-1')}"

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Run the socket; whatever ends it (a close, or an error the server answers with 1011), its slot, metric,
        re-reads and subscription are let go."""
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._let_go()

    async def disconnect(self, code: int) -> None:
        await self._let_go()

    async def _let_go(self) -> None:
        """Release what the open socket holds; safe to call more than once."""
        if hasattr(self, "rechecking"):
            self.rechecking.cancel()
        if hasattr(self, "group"):
            await self.channel_layer.group_discard(self.group, self.channel_name)
        if hasattr(self, "held"):
            await self.held.aclose()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        """Frames are JSON text: a binary or empty frame gets an error frame, and the socket stays open."""
        if not text_data:
            if hasattr(self, "group"):
                kind = "binary" if bytes_data is not None else "empty"
                await self._error(ApiError(ErrorCode.INVALID_JSON, f"Frames must be JSON text; this one was {kind}."))
            return
        await super().receive(text_data=text_data, **kwargs)

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
        self.reader.watch(submitted.reply.id)
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
        check_cursor(message, after, await db(log_last_seq)(message_id=message.id))
        async with self.sending:
            self.reader.follow_from(message.id, after)
            await self._send_all(self.reader.catch_up(message.id))

    async def log_events(self, message: dict[str, Any]) -> None:
        """Channel-layer handler: live events of a message of this session."""
        async with self.sending:
            await self._send_all(self.reader.live(message))

    async def _recheck_forever(self) -> None:
        """Read the log of every unfinished reply this socket follows, in case live events were lost."""
        recheck = float(settings.BROOK_STREAM_RECHECK_SECONDS)
        while True:
            await asyncio.sleep(recheck_seconds(recheck))
            try:
                async with self.sending:
                    await self._send_all(self.reader.recheck())
            except Exception:
                logger.exception("Re-reading the log for socket of session %s failed; trying again", self.session.id)

    async def _send_all(self, events: AsyncIterator[LoggedEvent]) -> None:
        """Send what the reader yields, as the tenant's thought visibility shows it (callers hold ``sending``)."""
        async for event in events:
            shown = redact_event(event, self.visibility)
            if shown is not None:
                await self.send_json(ws_frame(shown))

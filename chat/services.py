"""Writes to sessions, messages and thought steps. Views, the runner and tests all go through these functions."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import async_to_sync
from django.db import IntegrityError, transaction
from django.utils import timezone

from chat.models import ChatSession, Message, MessageStatus, Role, StepStatus, ThoughtStep
from chat.selectors import message_get_with_steps, reply_for_client_message
from config.errors import ApiError, ErrorCode
from tenants.models import Tenant


def session_create(*, tenant: Tenant, visitor_id: str = "") -> ChatSession:
    return ChatSession.objects.create(tenant=tenant, visitor_id=visitor_id)


def _check_content(*, session: ChatSession, content: str) -> None:
    if not content.strip():
        raise ApiError(ErrorCode.INVALID_INPUT, "content: the message is empty.")
    limit = session.tenant.max_message_length
    if len(content) > limit:
        raise ApiError(
            ErrorCode.MESSAGE_TOO_LONG,
            f"The message has {len(content)} characters; this assistant accepts at most {limit}.",
            details={"max_length": limit, "length": len(content)},
        )


def _existing_reply(*, session: ChatSession, content: str, client_message_id: str) -> Message | None:
    found = reply_for_client_message(session=session, client_message_id=client_message_id)
    if found is None:
        return None
    user_message, reply = found
    if user_message.content != content:
        raise ApiError(
            ErrorCode.IDEMPOTENCY_CONFLICT,
            "client_message_id was already used in this session for a different message.",
            status_code=409,
        )
    return reply


def message_submit(*, session: ChatSession, content: str, client_message_id: str | None = None) -> tuple[Message, bool]:
    """Store the user's message and a queued reply to it; returns (reply, created).

    The same ``client_message_id`` again returns the first reply (created=False) and starts nothing: this is what
    makes retries safe. Reusing the key for other content is a 409.
    """
    _check_content(session=session, content=content)
    if client_message_id:
        existing = _existing_reply(session=session, content=content, client_message_id=client_message_id)
        if existing is not None:
            return existing, False
    now = timezone.now()
    try:
        with transaction.atomic():
            user_message = Message.objects.create(
                session=session,
                role=Role.USER,
                content=content,
                client_message_id=client_message_id or "",
                status=MessageStatus.COMPLETED,
                created_at=now,
            )
            # One microsecond later, so that ordering by time always puts the reply after its question.
            reply = Message.objects.create(
                session=session,
                role=Role.ASSISTANT,
                reply_to=user_message,
                status=MessageStatus.QUEUED,
                created_at=now + timedelta(microseconds=1),
            )
            ChatSession.objects.filter(id=session.id).update(last_activity_at=now)
    except IntegrityError:
        # A concurrent request with the same key won the race; answer with its reply.
        if not client_message_id:
            raise
        existing = _existing_reply(session=session, content=content, client_message_id=client_message_id)
        if existing is None:
            raise
        return existing, False
    return reply, True


def message_reply_batch(*, session: ChatSession, content: str, client_message_id: str | None = None) -> Message:
    """Store the message, run the tenant's agent to the end, and return the finished reply with its steps."""
    from streaming.runner import run_reply  # the runner imports these services

    reply, created = message_submit(session=session, content=content, client_message_id=client_message_id)
    if created:
        async_to_sync(run_reply)(reply_id=reply.id)
    return message_get_with_steps(message_id=reply.id)


def reply_start(*, reply_id: uuid.UUID) -> bool:
    """Claim a queued reply for running; False if someone else already did (or it was cancelled)."""
    claimed = Message.objects.filter(id=reply_id, status=MessageStatus.QUEUED).update(
        status=MessageStatus.RUNNING, started_at=timezone.now(), updated_at=timezone.now()
    )
    return claimed == 1


def step_start(
    *,
    message_id: uuid.UUID,
    index: int,
    kind: str,
    title: str,
    detail: str,
    metadata: dict[str, Any],
    started_at: datetime,
) -> None:
    ThoughtStep.objects.create(
        message_id=message_id,
        index=index,
        kind=kind,
        title=title[:200],
        detail=detail,
        metadata=metadata,
        started_at=started_at,
        status=StepStatus.RUNNING,
    )


def step_finish(
    *,
    message_id: uuid.UUID,
    index: int,
    status: str,
    duration_ms: int,
    detail: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> None:
    step = ThoughtStep.objects.get(message_id=message_id, index=index)
    step.status = status
    step.duration_ms = duration_ms
    fields = ["status", "duration_ms"]
    if detail is not None:
        step.detail = detail
        fields.append("detail")
    if metadata:
        step.metadata = {**step.metadata, **metadata}
        fields.append("metadata")
    step.save(update_fields=fields)


def reply_finish(
    *,
    reply_id: uuid.UUID,
    status: MessageStatus,
    content: str,
    reasoning: str,
    duration_ms: int,
    time_to_first_token_ms: int | None,
    model: str = "",
    prompt_tokens: int | None = None,
    completion_tokens: int | None = None,
    error_code: str = "",
    error_message: str = "",
) -> bool:
    """Record how a running reply ended; False if it was no longer running (another worker or a sweeper ended it)."""
    now = timezone.now()
    updated = Message.objects.filter(id=reply_id, status=MessageStatus.RUNNING).update(
        status=status,
        content=content,
        reasoning=reasoning,
        duration_ms=duration_ms,
        time_to_first_token_ms=time_to_first_token_ms,
        model=model,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        error_code=error_code,
        error_message=error_message[:500],
        finished_at=now,
        updated_at=now,
    )
    if updated:
        ChatSession.objects.filter(messages__id=reply_id).update(last_activity_at=now)
    return updated == 1

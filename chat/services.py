"""Writes to sessions, messages and thought steps. Views, the runner and tests all go through these functions."""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from chat.models import (
    FALLBACK_CODES,
    ChatSession,
    Delivery,
    FallbackReason,
    FallbackReport,
    Message,
    MessageStatus,
    Role,
)
from chat.selectors import reply_for_client_message
from config.errors import ApiError, ErrorCode
from streaming import metrics
from streaming.events import EventType
from streaming.fanout import publish_on_commit
from streaming.services import CancelOutcome, log_append, reply_cancel
from tenants.limits import Rate, rate_check
from tenants.models import DoubleTexting, Tenant
from tenants.rollout import delivery_for, rollout_bucket


def session_create(*, tenant: Tenant, visitor_id: str = "") -> ChatSession:
    """A new session, with its delivery decided by the tenant's rollout for this visitor (``tenants.rollout``).

    Without a visitor id, the session id stands in: such a visitor is placed afresh with each session.
    """
    session_id = uuid.uuid4()
    bucket = rollout_bucket(tenant_id=tenant.pk, visitor_key=visitor_id or str(session_id))
    return ChatSession.objects.create(
        id=session_id,
        tenant=tenant,
        visitor_id=visitor_id,
        rollout_bucket=bucket,
        delivery=delivery_for(tenant=tenant, bucket=bucket),
    )


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


def _check_rates(*, session: ChatSession) -> None:
    """The tenant's message rates, per session and across the tenant (a retry of a stored message is not counted)."""
    tenant = session.tenant
    rate_check(
        Rate("session-messages", str(session.id), tenant.messages_per_minute, "messages in this conversation"),
        Rate("tenant-messages", str(tenant.pk), tenant.tenant_messages_per_minute, "messages to this assistant"),
    )


@dataclass(frozen=True, slots=True)
class Submitted:
    """What ``message_submit`` did: the reply, whether it is new, and running replies it asked to stop."""

    reply: Message
    created: bool
    interrupted: list[uuid.UUID] = field(default_factory=list)


def _apply_double_texting(*, session: ChatSession) -> list[uuid.UUID]:
    """The tenant's policy for a message sent while a reply of the session is still queued or running."""
    active = list(
        Message.objects.filter(
            session=session, role=Role.ASSISTANT, status__in=[MessageStatus.QUEUED, MessageStatus.RUNNING]
        ).values_list("id", "status")
    )
    if not active:
        return []
    policy = session.tenant.double_texting
    if policy == DoubleTexting.REJECT:
        raise ApiError(
            ErrorCode.MESSAGE_IN_PROGRESS,
            "The assistant is still answering the previous message; wait for it or cancel it.",
            status_code=409,
            details={"message_id": str(active[0][0])},
        )
    if policy == DoubleTexting.ENQUEUE:
        return []
    to_stop = []
    for reply_id, _status in active:
        outcome, events = reply_cancel(reply_id=reply_id)
        publish_on_commit(events, session_id=session.id)
        if outcome == CancelOutcome.REQUESTED:
            to_stop.append(reply_id)
    return to_stop


def message_submit(
    *,
    session: ChatSession,
    content: str,
    client_message_id: str | None = None,
    delivery: str = Delivery.BATCH,
) -> Submitted:
    """Store the user's message and a queued reply to it, and open the reply's log with ``message.started``.

    The same ``client_message_id`` again returns the first reply (created=False) and starts nothing: this is what
    makes retries safe. Reusing the key for other content is a 409. A message sent while a reply is still running
    follows the tenant's double-texting policy.
    """
    _check_content(session=session, content=content)
    now = timezone.now()
    try:
        with transaction.atomic():
            # Lock the session: retries and double texts of one session are decided one at a time.
            if ChatSession.objects.select_for_update().filter(id=session.id).first() is None:
                raise ApiError(ErrorCode.SESSION_NOT_FOUND, "No such session.", status_code=404)  # just purged
            if client_message_id:
                existing = _existing_reply(session=session, content=content, client_message_id=client_message_id)
                if existing is not None:
                    return Submitted(reply=existing, created=False)
            _check_rates(session=session)
            interrupted = _apply_double_texting(session=session)
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
                delivery=delivery,
                created_at=now + timedelta(microseconds=1),
            )
            started = log_append(
                message_id=reply.id,
                first_seq=1,
                items=[
                    (
                        EventType.MESSAGE_STARTED,
                        {
                            "message_id": str(reply.id),
                            "session_id": str(session.id),
                            "reply_to": str(user_message.id),
                            "status": MessageStatus.QUEUED,
                            "delivery": delivery,
                        },
                    )
                ],
            )
            ChatSession.objects.filter(id=session.id).update(last_activity_at=now)
            publish_on_commit(started, session_id=session.id)
    except IntegrityError:
        # A concurrent request with the same key won the race; answer with its reply.
        if not client_message_id:
            raise
        existing = _existing_reply(session=session, content=content, client_message_id=client_message_id)
        if existing is None:
            raise
        return Submitted(reply=existing, created=False)
    return Submitted(reply=reply, created=True, interrupted=interrupted)


FALLBACKS_PER_MINUTE = 20


def fallback_report(
    *,
    session: ChatSession,
    reason: FallbackReason,
    from_delivery: str,
    to_delivery: str,
    message: Message | None = None,
    detail: str = "",
) -> FallbackReport:
    """Store a widget's report that it left one transport for another; its code follows from the reason."""
    rate_check(Rate("fallbacks", str(session.id), FALLBACKS_PER_MINUTE, "fallback reports from this conversation"))
    transaction.on_commit(
        functools.partial(metrics.record_fallback, tenant=session.tenant.slug, reason=reason, to_delivery=to_delivery)
    )
    return FallbackReport.objects.create(
        tenant_id=session.tenant_id,
        session=session,
        message=message,
        reason=reason,
        code=FALLBACK_CODES[reason],
        from_delivery=from_delivery,
        to_delivery=to_delivery,
        detail=detail[:500],
    )

"""Every write to sessions, messages, thought steps and the event log, and every status change of a reply
(docs/architecture.md, "The path of one message"; docs/events.md). Synchronous; async callers wrap them in
``core.db_bridge.db``.

A reply moves queued → running → completed | cancelled | failed | interrupted, and only here: ``message_submit``
(queued), ``reply_claim`` (running), ``reply_finish``, ``reply_cancel`` and ``reply_interrupt`` (the ends).
Every function that appends to a log also writes the rows that mirror it (message status, thought steps, content
snapshots) in the same transaction, so the log and the rows never disagree. Sequence numbers are guarded by the
``(message, seq)`` unique constraint: a writer that finds its seq taken has lost the message (``LogConflict``).

Nothing here publishes: functions return the events they stored, and the caller publishes them once the
transaction has committed (``streaming.live.fanout``). Views, the runner, the sweeper, admin actions, management
commands and tests all call these same functions.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Exists, Max, OuterRef, QuerySet
from django.utils import timezone

from chat.events import EventType, LoggedEvent
from chat.models import (
    FALLBACK_CODES,
    ChatSession,
    Delivery,
    Event,
    FallbackReason,
    FallbackReport,
    Message,
    MessageStatus,
    Role,
    StepKind,
    StepStatus,
    ThoughtStep,
)
from chat.pushed import Pushed
from chat.selectors import content_from_log, reply_for_client_message
from chat.visibility import shows_reasoning, shows_steps
from core import metrics
from core.errors import ApiError, ErrorCode
from core.limits import Rate, rate_check
from tenants.models import Agent as AgentKind
from tenants.models import DoubleTexting, ServerKey, Tenant
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


def _check_text(name: str, value: str) -> None:
    """Text every database stores: no null characters, no lone surrogates (400 ``INVALID_INPUT``)."""
    if "\x00" in value:
        raise ApiError(ErrorCode.INVALID_INPUT, f"{name}: null characters are not allowed.")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(ErrorCode.INVALID_INPUT, f"{name}: the text is not valid Unicode.") from None


def _check_content(*, session: ChatSession, content: str, client_message_id: str | None) -> None:
    """The checks every transport's message passes, here where they all submit."""
    _check_text("content", content)
    _check_text("client_message_id", client_message_id or "")
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
    """What ``message_submit`` did: the reply, whether it is new, running replies it asked to stop, and the events it
    stored (``message.started``, and ``message.cancelled`` for queued replies the double-texting policy ended), which
    the caller publishes now that they are committed."""

    reply: Message
    created: bool
    interrupted: list[uuid.UUID] = field(default_factory=list)
    events: list[LoggedEvent] = field(default_factory=list)


def _apply_double_texting(*, session: ChatSession, stored: list[LoggedEvent]) -> list[uuid.UUID]:
    """The tenant's policy for a message sent while a reply of the session is still queued or running; the events it
    stores are added to ``stored``."""
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
        stored.extend(events)
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
    _check_content(session=session, content=content, client_message_id=client_message_id)
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
            stored: list[LoggedEvent] = []
            interrupted = _apply_double_texting(session=session, stored=stored)
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
            stored += log_append(
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
    except IntegrityError:
        # A concurrent request with the same key won the race; answer with its reply.
        if not client_message_id:
            raise
        existing = _existing_reply(session=session, content=content, client_message_id=client_message_id)
        if existing is None:
            raise
        return Submitted(reply=existing, created=False)
    return Submitted(reply=reply, created=True, interrupted=interrupted, events=stored)


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


# --- The event log and a reply's run ---------------------------------------------------------------------------------


class LogConflict(Exception):
    """The sequence number was taken: someone else (the sweeper) now owns this message's log."""


@dataclass(frozen=True, slots=True)
class StepOpened:
    index: int
    kind: str
    title: str
    detail: str
    metadata: dict[str, Any]
    started_at: datetime


@dataclass(frozen=True, slots=True)
class StepClosed:
    index: int
    status: str
    duration_ms: int
    detail: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The reply's content and reasoning including every delta up to ``seq``."""

    seq: int
    content: str
    reasoning: str


def _to_logged(row: Event) -> LoggedEvent:
    return LoggedEvent(message_id=row.message_id, seq=row.seq, type=row.type, data=row.data, created_at=row.created_at)


def _insert(message_id: uuid.UUID, first_seq: int, items: Sequence[tuple[str, dict[str, Any]]]) -> list[LoggedEvent]:
    now = timezone.now()
    rows = [
        Event(message_id=message_id, seq=first_seq + offset, type=kind, data=data, created_at=now)
        for offset, (kind, data) in enumerate(items)
    ]
    Event.objects.bulk_create(rows)
    return [_to_logged(row) for row in rows]


def log_next_seq(*, message_id: uuid.UUID) -> int:
    last = Event.objects.filter(message_id=message_id).aggregate(last=Max("seq"))["last"]
    return (last or 0) + 1


def log_append(
    *,
    message_id: uuid.UUID,
    first_seq: int,
    items: Sequence[tuple[str, dict[str, Any]]],
    steps: Sequence[StepOpened | StepClosed] = (),
    snapshot: Snapshot | None = None,
) -> list[LoggedEvent]:
    """Store events ``first_seq, first_seq + 1, …`` and the step rows and snapshot they imply, in one transaction."""
    try:
        with transaction.atomic():
            events = _insert(message_id, first_seq, items)
            for step in steps:
                if isinstance(step, StepOpened):
                    ThoughtStep.objects.create(
                        message_id=message_id,
                        index=step.index,
                        kind=step.kind,
                        title=step.title[:200],
                        detail=step.detail,
                        metadata=step.metadata,
                        started_at=step.started_at,
                        status=StepStatus.RUNNING,
                    )
                else:
                    _close_step(message_id, step)
            if snapshot is not None:
                Message.objects.filter(id=message_id).update(
                    content=snapshot.content, reasoning=snapshot.reasoning, snapshot_seq=snapshot.seq
                )
    except IntegrityError as error:
        raise LogConflict(str(message_id)) from error
    return events


def _close_step(message_id: uuid.UUID, step: StepClosed) -> None:
    changes: dict[str, Any] = {"status": step.status, "duration_ms": step.duration_ms}
    if step.detail is not None:
        changes["detail"] = step.detail
    if step.metadata:
        row = ThoughtStep.objects.only("metadata").filter(message_id=message_id, index=step.index).first()
        changes["metadata"] = {**(row.metadata if row else {}), **step.metadata}
    ThoughtStep.objects.filter(message_id=message_id, index=step.index).update(**changes)


def reply_claim(
    *, reply_id: uuid.UUID, lease_seconds: float, agent_key: ServerKey | None = None
) -> tuple[Message, LoggedEvent] | None:
    """Take a queued reply for running: queued → running with a lease, and a ``status`` event.

    Brook's runner claims (``agent_key`` None) only replies of tenants whose agent is Brook's own; a tenant's own agent
    claims (with its server key) only its tenant's replies, and the reply remembers the key. None if the reply is not
    queued, not claimable by this claimer, or another reply of its session is running (it waits its turn: the
    running one's runner, or the sweeper, starts it later). The session row is locked so two claims cannot both pass.
    """
    with transaction.atomic():
        candidates = Message.objects.filter(id=reply_id, status=MessageStatus.QUEUED)
        if agent_key is None:
            candidates = candidates.exclude(session__tenant__agent=AgentKind.EXTERNAL)
        elif not ServerKey.objects.filter(pk=agent_key.pk, revoked_at__isnull=True, tenant__is_active=True).exists():
            return None  # revoked (or its tenant deactivated) while it waited: it takes nothing
        else:
            candidates = candidates.filter(
                session__tenant_id=agent_key.tenant_id, session__tenant__agent=AgentKind.EXTERNAL
            )
        reply = candidates.select_related("session__tenant").first()
        if reply is None:
            return None
        ChatSession.objects.select_for_update().filter(id=reply.session_id).first()
        if Message.objects.filter(session_id=reply.session_id, status=MessageStatus.RUNNING).exists():
            return None
        now = timezone.now()
        claimed = Message.objects.filter(id=reply_id, status=MessageStatus.QUEUED).update(
            status=MessageStatus.RUNNING,
            started_at=now,
            lease_expires_at=now + timedelta(seconds=lease_seconds),
            agent_key=agent_key,
            updated_at=now,
        )
        if claimed != 1:
            return None
        seq = log_next_seq(message_id=reply_id)
        (event,) = _insert(reply_id, seq, [(EventType.STATUS, {"status": MessageStatus.RUNNING})])
        reply.status = MessageStatus.RUNNING
        reply.started_at = now
        reply.lease_expires_at = now + timedelta(seconds=lease_seconds)
        reply.agent_key = agent_key
        transaction.on_commit(
            functools.partial(metrics.record_reply_started, tenant=reply.session.tenant.slug, delivery=reply.delivery)
        )
        return reply, event


def _record_ended_on_commit(reply_id: uuid.UUID, outcome: str, *, error_code: str = "", now: datetime) -> None:
    """Count a reply that ended outside its runner (cancelled while queued, interrupted by the sweeper)."""
    tenant, delivery, started_at = Message.objects.values_list("session__tenant__slug", "delivery", "started_at").get(
        id=reply_id
    )
    duration_ms = round((now - started_at).total_seconds() * 1000) if started_at else None
    transaction.on_commit(
        functools.partial(
            metrics.record_reply_ended,
            tenant=tenant,
            delivery=delivery,
            outcome=outcome,
            error_code=error_code,
            duration_ms=duration_ms,
        )
    )


def reply_renew_lease(*, reply_id: uuid.UUID, lease_seconds: float) -> tuple[bool, bool]:
    """Extend a running reply's lease: (still ours, cancel requested)."""
    renewed = Message.objects.filter(id=reply_id, status=MessageStatus.RUNNING).update(
        lease_expires_at=timezone.now() + timedelta(seconds=lease_seconds)
    )
    if not renewed:
        return False, False
    cancel_requested = Message.objects.filter(id=reply_id, cancel_requested_at__isnull=False).exists()
    return True, cancel_requested


def reply_finish(
    *,
    reply_id: uuid.UUID,
    seq: int,
    status: MessageStatus,
    event_type: EventType,
    event_data: dict[str, Any],
    content: str,
    reasoning: str,
    duration_ms: int,
    time_to_first_token_ms: int | None,
    model: str = "",
    prompt_tokens: int | None = None,
    completion_tokens: int | None = None,
    reasoning_tokens: int | None = None,
    error_code: str = "",
    error_message: str = "",
) -> LoggedEvent | None:
    """End a running reply with its terminal event; None if it was no longer ours (swept or already ended)."""
    now = timezone.now()
    try:
        with transaction.atomic():
            updated = Message.objects.filter(id=reply_id, status=MessageStatus.RUNNING).update(
                status=status,
                content=content,
                reasoning=reasoning,
                snapshot_seq=seq,
                duration_ms=duration_ms,
                time_to_first_token_ms=time_to_first_token_ms,
                model=model,
                prompt_tokens=prompt_tokens,
                completion_tokens=completion_tokens,
                reasoning_tokens=reasoning_tokens,
                error_code=error_code,
                error_message=error_message[:500],
                lease_expires_at=None,
                finished_at=now,
                updated_at=now,
            )
            if updated != 1:
                return None
            (event,) = _insert(reply_id, seq, [(event_type, event_data)])
    except IntegrityError:
        return None
    return event


class CancelOutcome(StrEnum):
    CANCELLED = "cancelled"  # it was queued: cancelled here and now
    REQUESTED = "requested"  # it is running: its runner will stop it
    FINISHED = "finished"  # it had already ended; nothing to do


def reply_cancel(*, reply_id: uuid.UUID) -> tuple[CancelOutcome, list[LoggedEvent]]:
    """Cancel a reply, idempotently. A queued one ends at once; a running one is flagged for its runner."""
    now = timezone.now()
    with transaction.atomic():
        cancelled = Message.objects.filter(id=reply_id, status=MessageStatus.QUEUED).update(
            status=MessageStatus.CANCELLED, cancel_requested_at=now, finished_at=now, updated_at=now
        )
        if cancelled:
            seq = log_next_seq(message_id=reply_id)
            events = _insert(
                reply_id,
                seq,
                [
                    (
                        EventType.MESSAGE_CANCELLED,
                        {"content": "", "reasoning": "", "reason": "cancelled before it started"},
                    )
                ],
            )
            _record_ended_on_commit(reply_id, MessageStatus.CANCELLED, now=now)
            return CancelOutcome.CANCELLED, events
        Message.objects.filter(id=reply_id, status=MessageStatus.RUNNING, cancel_requested_at__isnull=True).update(
            cancel_requested_at=now
        )
        if Message.objects.filter(id=reply_id, status=MessageStatus.RUNNING).exists():
            return CancelOutcome.REQUESTED, []
    return CancelOutcome.FINISHED, []


INTERRUPTED_MESSAGE = "The worker running this reply stopped; the reply was interrupted."


def reply_interrupt(*, reply_id: uuid.UUID, now: datetime) -> LoggedEvent | None:
    """Sweep a running reply whose lease lapsed: interrupted, content rebuilt from its log, a terminal event."""
    return _end_from_outside(
        Message.objects.filter(id=reply_id, status=MessageStatus.RUNNING, lease_expires_at__lt=now),
        now=now,
        status=MessageStatus.INTERRUPTED,
        error_code=ErrorCode.RUN_INTERRUPTED,
        error_message=INTERRUPTED_MESSAGE,
    )


def reply_time_out(*, reply_id: uuid.UUID, now: datetime, waited: bool = False) -> LoggedEvent | None:
    """End a reply of a tenant's own agent (``external``) that its agent did not finish in time, as Brook's runner
    ends its own (docs/agents.md, "Time limits"): queued past the tenant's ``max_stream_seconds`` with no agent
    claiming it (``AGENT_UNAVAILABLE``), running past it (``STREAM_004``), or asked to stop ``STOP_GRACE`` ago and
    still running (cancelled). ``waited``: the caller waited the limit out already (batch mode), so an unfinished
    reply is past it whatever its timestamps. None if it is not such a reply (any more)."""
    reply = (
        Message.objects.filter(id=reply_id, session__tenant__agent=AgentKind.EXTERNAL)
        .select_related("session__tenant")
        .first()
    )
    if reply is None:
        return None
    limit = timedelta(seconds=reply.session.tenant.max_stream_seconds)
    if reply.status == MessageStatus.QUEUED and (waited or reply.created_at < now - limit):
        return _end_from_outside(
            Message.objects.filter(id=reply_id, status=MessageStatus.QUEUED),
            now=now,
            status=MessageStatus.FAILED,
            error_code=ErrorCode.AGENT_UNAVAILABLE,
            error_message="No agent took up this reply in time.",
        )
    running = Message.objects.filter(id=reply_id, status=MessageStatus.RUNNING)
    if (
        reply.status == MessageStatus.RUNNING
        and reply.cancel_requested_at
        and reply.cancel_requested_at < now - STOP_GRACE
    ):
        return _end_from_outside(running, now=now, status=MessageStatus.CANCELLED, reason="cancelled by the visitor")
    if reply.status == MessageStatus.RUNNING and (waited or (reply.started_at and reply.started_at < now - limit)):
        return _end_from_outside(
            running,
            now=now,
            status=MessageStatus.FAILED,
            error_code=ErrorCode.STREAM_TIMEOUT,
            error_message=f"The reply took longer than {limit.seconds} s and was stopped.",
        )
    return None


# How long a tenant's own agent has to end a reply after Stop before Brook ends it (cancelled) without it.
STOP_GRACE = timedelta(seconds=10)


def _end_from_outside(
    claim: QuerySet[Message],
    *,
    now: datetime,
    status: MessageStatus,
    error_code: str = "",
    error_message: str = "",
    reason: str = "",
) -> LoggedEvent | None:
    """End the reply ``claim`` selects (a conditional update: it must still be as the caller saw it) from outside
    its agent: ``status``, content rebuilt from its log, running steps failed, one terminal event."""
    reply_id = claim.values_list("id", flat=True).first()
    if reply_id is None:
        return None
    try:
        with transaction.atomic():
            ended = claim.update(
                status=status,
                error_code=error_code,
                error_message=error_message,
                lease_expires_at=None,
                finished_at=now,
                updated_at=now,
            )
            if not ended:
                return None
            content, reasoning, last_seq = content_from_log(message_id=reply_id)
            Message.objects.filter(id=reply_id).update(content=content, reasoning=reasoning, snapshot_seq=last_seq)
            ThoughtStep.objects.filter(message_id=reply_id, status=StepStatus.RUNNING).update(status=StepStatus.FAILED)
            data: dict[str, Any] = {"content": content, "reasoning": reasoning}
            if status == MessageStatus.CANCELLED:
                kind, data = EventType.MESSAGE_CANCELLED, data | {"reason": reason}
            else:
                kind, data = EventType.MESSAGE_FAILED, data | {"code": error_code, "message": error_message}
            (event,) = _insert(reply_id, last_seq + 1, [(kind, data)])
            _record_ended_on_commit(reply_id, status, error_code=error_code, now=now)
    except IntegrityError:
        return None  # its runner or agent wrote first; the next sweep looks again
    return event


def logs_compact(*, now: datetime, batch: int = 500) -> int:
    """Remove the event logs of replies finished longer ago than their tenant's retention; returns how many."""
    compacted = 0
    for tenant_id, days in Tenant.objects.values_list("id", "log_retention_days"):
        ids = list(
            Message.objects.filter(
                session__tenant_id=tenant_id,
                finished_at__lt=now - timedelta(days=days),
                log_compacted_at__isnull=True,
            ).values_list("id", flat=True)[:batch]
        )
        if not ids:
            continue
        with transaction.atomic():
            Event.objects.filter(message_id__in=ids).delete()
            Message.objects.filter(id__in=ids).update(log_compacted_at=now)
        compacted += len(ids)
    return compacted


# --- A tenant's own agent: claiming replies and pushing their events (docs/agents.md) ------------------------------


def reply_claim_next(*, agent_key: ServerKey, lease_seconds: float) -> tuple[Message, LoggedEvent] | None:
    """The key's tenant's oldest queued reply that may start now (nothing else running in its session), claimed for
    the key under a lease; None if there is none."""
    running = Message.objects.filter(session_id=OuterRef("session_id"), status=MessageStatus.RUNNING)
    candidates = list(
        Message.objects.filter(
            session__tenant_id=agent_key.tenant_id,
            session__tenant__agent=AgentKind.EXTERNAL,
            status=MessageStatus.QUEUED,
        )
        .exclude(Exists(running))
        .order_by("created_at", "id")
        .values_list("id", flat=True)[:20]
    )
    for reply_id in candidates:  # another claimer may take one first: try the next
        claimed = reply_claim(reply_id=reply_id, lease_seconds=lease_seconds, agent_key=agent_key)
        if claimed is not None:
            return claimed
    return None


@dataclass(frozen=True, slots=True)
class Held:
    """Where a reply held by an agent stands: its status, the agent's last accepted seq, whether Stop was asked."""

    reply_id: uuid.UUID
    session_id: uuid.UUID
    status: str
    agent_seq: int
    stop_requested: bool
    lease_expires_at: datetime | None
    events: list[LoggedEvent] = field(default_factory=list)


def held(reply: Message, events: list[LoggedEvent] | None = None) -> Held:
    """Where ``reply`` stands for the agent that holds it."""
    return Held(
        reply_id=reply.id,
        session_id=reply.session_id,
        status=reply.status,
        agent_seq=reply.agent_seq,
        stop_requested=reply.cancel_requested_at is not None,
        lease_expires_at=reply.lease_expires_at,
        events=events or [],
    )


def _lock_held(*, reply_id: uuid.UUID, agent_key: ServerKey) -> Message:
    """The reply, locked, if ``agent_key`` holds it; 404 ``MESSAGE_NOT_FOUND`` otherwise (another tenant's reply, or
    one this key never claimed, looks absent)."""
    reply = (
        Message.objects.select_for_update()
        .select_related("session__tenant")
        .filter(id=reply_id, role=Role.ASSISTANT, agent_key_id=agent_key.pk)
        .first()
    )
    if reply is None:
        raise ApiError(ErrorCode.MESSAGE_NOT_FOUND, "No reply held by this key has this id.", status_code=404)
    return reply


def reply_heartbeat(*, reply_id: uuid.UUID, agent_key: ServerKey, lease_seconds: float) -> Held:
    """Renew the lease of a running reply the key holds; the answer says whether Stop was asked."""
    with transaction.atomic():
        reply = _lock_held(reply_id=reply_id, agent_key=agent_key)
        if reply.status == MessageStatus.RUNNING:
            reply.lease_expires_at = timezone.now() + timedelta(seconds=lease_seconds)
            reply.save(update_fields=["lease_expires_at"])
        return held(reply)


def _refuse(code: ErrorCode, message: str, *, status: int = 409, **details: Any) -> ApiError:
    """A refused push: raised inside the push's transaction, so nothing of it is stored."""
    return ApiError(code, message, status_code=status, details=details or None)


def reply_ingest(*, reply_id: uuid.UUID, agent_key: ServerKey, events: Sequence[Pushed], lease_seconds: float) -> Held:
    """Store what a tenant's own agent pushed into a reply it holds, as Brook's own runs store it (docs/agents.md).

    Events whose ``seq`` the reply already has are acknowledged and ignored (a retried push is safe). The first new one
    must be the next (409 ``AGENT_SEQUENCE_GAP``, with ``expected_seq``), and the rest follow it without a gap. A step
    completed or a tool result for something never started is 409 ``AGENT_STEP_UNKNOWN``; anything after the reply
    ended is 409 ``AGENT_REPLY_ENDED``. A refused push stores nothing. Each accepted push renews the lease; the
    answer says whether Stop was asked. The caller publishes ``Held.events`` once this has committed.
    """
    with transaction.atomic():
        reply = _lock_held(reply_id=reply_id, agent_key=agent_key)
        fresh = [event for event in events if event.seq > reply.agent_seq]
        if not fresh:
            return held(reply)
        skipped = len(events) - len(fresh)  # positions in errors count the whole batch
        if reply.status != MessageStatus.RUNNING:
            raise _refuse(
                ErrorCode.AGENT_REPLY_ENDED,
                f"The reply has ended ({reply.status}); nothing more can be added to it.",
                reply_status=reply.status,
            )
        for offset, event in enumerate(fresh):
            if event.seq != reply.agent_seq + 1 + offset:
                expected = reply.agent_seq + 1 + offset
                raise _refuse(
                    ErrorCode.AGENT_SEQUENCE_GAP,
                    f"Expected seq {expected} next, got {event.seq}.",
                    expected_seq=expected,
                    position=skipped + offset,
                )
        stored = _PushedRecording(reply).record(fresh, lease_seconds=lease_seconds, first_position=skipped)
        return held(reply, stored)


class _PushedRecording:
    """Turns pushed events into the reply's log, step rows and row, as ``streaming.run.recorder`` does for Brook's
    own agents. What the tenant's visibility hides is tracked (so later events can refer to it) but not stored."""

    def __init__(self, reply: Message) -> None:
        self.reply = reply
        tenant = reply.session.tenant
        self.keeps_steps = shows_steps(tenant.thought_visibility)
        self.keeps_reasoning = shows_reasoning(tenant.thought_visibility)
        state = reply.agent_state or {}
        # index → {"at": start in epoch seconds, "stored": whether its start is in the log (visibility may change)}
        self.open_steps: dict[str, dict[str, Any]] = dict(state.get("open_steps", {}))
        self.next_step: int = int(state.get("next_step", 0))
        self.tool_steps: dict[str, int] = dict(state.get("tool_steps", {}))  # call_id → step index
        self.usage: dict[str, Any] = dict(state.get("usage", {}))
        self.now = timezone.now()
        self.items: list[tuple[str, dict[str, Any]]] = []
        self.steps: list[StepOpened | StepClosed] = []
        self.deltas = False

    def record(self, events: Sequence[Pushed], *, lease_seconds: float, first_position: int = 0) -> list[LoggedEvent]:
        terminal: Pushed | None = None
        for position, event in enumerate(events, start=first_position):
            if terminal is not None:
                raise _refuse(ErrorCode.AGENT_REPLY_ENDED, "Nothing may follow the terminal event.", position=position)
            if event.is_terminal:
                terminal = event
            else:
                self._add(event, position)
        if terminal is not None:  # steps still open end with the reply, in the log too (as Brook's own runs do)
            leftover = StepStatus.COMPLETED if terminal.type == EventType.MESSAGE_COMPLETED else StepStatus.FAILED
            for index in sorted(self.open_steps, key=int):
                self._close(-1, index=int(index), status=leftover, detail=None, metadata={})
        reply = self.reply
        content, reasoning, last_seq = content_from_log(message_id=reply.id)
        content += "".join(d["delta"] for k, d in self.items if k == EventType.TEXT_DELTA)
        reasoning += "".join(d["delta"] for k, d in self.items if k == EventType.REASONING_DELTA)
        if len(content) + len(reasoning) > MAX_PUSHED_REPLY_CHARACTERS:
            raise _refuse(
                ErrorCode.PAYLOAD_TOO_LARGE,
                f"A reply holds at most {MAX_PUSHED_REPLY_CHARACTERS:,} characters of answer and reasoning.",
                status=413,
                max_characters=MAX_PUSHED_REPLY_CHARACTERS,
            )
        stored: list[LoggedEvent] = []
        if self.items:
            snapshot = Snapshot(seq=last_seq + len(self.items), content=content, reasoning=reasoning)
            stored = log_append(
                message_id=reply.id, first_seq=last_seq + 1, items=self.items, steps=self.steps, snapshot=snapshot
            )
        if self.deltas and reply.time_to_first_token_ms is None and reply.started_at is not None:
            reply.time_to_first_token_ms = _ms(self.now - reply.started_at)
        reply.agent_seq = events[-1].seq
        reply.agent_state = {
            "open_steps": self.open_steps,
            "next_step": self.next_step,
            "tool_steps": self.tool_steps,
            "usage": self.usage,
        }
        reply.lease_expires_at = self.now + timedelta(seconds=lease_seconds)
        reply.save(update_fields=["agent_seq", "agent_state", "lease_expires_at", "time_to_first_token_ms"])
        if terminal is not None:
            stored += self._finish(terminal, content, reasoning, last_seq + len(self.items) + 1)
        return stored

    def _add(self, event: Pushed, position: int) -> None:
        data = event.data
        kind = event.type
        if kind == EventType.STEP_STARTED:
            self._open(
                position,
                index=data["index"],
                kind=data["kind"],
                title=data["title"],
                detail=data["detail"],
                metadata=data["metadata"],
            )
        elif kind == EventType.STEP_COMPLETED:
            self._close(
                position,
                index=data["index"],
                status=data["status"],
                detail=data.get("detail"),
                metadata=data["metadata"],
            )
        elif kind == EventType.TEXT_DELTA:
            self.deltas = True
            self.items.append((kind, {"delta": data["delta"]}))
        elif kind == EventType.REASONING_DELTA:
            self.deltas = True
            if self.keeps_reasoning:
                self.items.append((kind, {"delta": data["delta"]}))
        elif kind == EventType.TOOL_CALL:
            if data["call_id"] in self.tool_steps:
                raise _refuse(
                    ErrorCode.AGENT_STEP_UNKNOWN,
                    f"Tool call {data['call_id']!r} is already running.",
                    position=position,
                )
            index = self.next_step
            self._open(
                position,
                index=index,
                kind=StepKind.TOOL_CALL,
                title=f"Calling {data['name']}",
                detail="",
                metadata={"call_id": data["call_id"], "name": data["name"], "arguments": data["arguments"]},
            )
            self.tool_steps[data["call_id"]] = index
            if self.keeps_steps:
                self.items.append((kind, {**data, "step": index}))
        elif kind == EventType.TOOL_RESULT:
            call_step = self.tool_steps.pop(data["call_id"], None)
            if call_step is None:
                raise _refuse(
                    ErrorCode.AGENT_STEP_UNKNOWN, f"No tool call {data['call_id']!r} is running.", position=position
                )
            if self.keeps_steps and self.open_steps.get(str(call_step), {}).get("stored"):
                self.items.append((kind, {**data, "step": call_step}))
            self._close(
                position,
                index=call_step,
                status=StepStatus.FAILED if data["is_error"] else StepStatus.COMPLETED,
                detail=None,
                metadata={"result": data["result"], "is_error": data["is_error"]},
            )
        else:  # usage
            self.usage.update({name: value for name, value in data.items() if value not in (None, "")})

    def _open(self, position: int, *, index: int, kind: str, title: str, detail: str, metadata: dict[str, Any]) -> None:
        if index != self.next_step:
            raise _refuse(
                ErrorCode.AGENT_STEP_UNKNOWN,
                f"The next step's index is {self.next_step}, not {index}.",
                position=position,
                expected_index=self.next_step,
            )
        self.next_step += 1
        self.open_steps[str(index)] = {"at": self.now.timestamp(), "stored": self.keeps_steps}
        if self.keeps_steps:
            self.steps.append(StepOpened(index, kind, title, detail, metadata, self.now))
            self.items.append(
                (
                    EventType.STEP_STARTED,
                    {
                        "index": index,
                        "kind": kind,
                        "title": title,
                        "detail": detail,
                        "metadata": metadata,
                        "started_at": self.now.isoformat(),
                    },
                )
            )

    def _close(self, position: int, *, index: int, status: str, detail: str | None, metadata: dict[str, Any]) -> None:
        opened = self.open_steps.pop(str(index), None)
        if opened is None:
            raise _refuse(ErrorCode.AGENT_STEP_UNKNOWN, f"Step {index} is not running.", position=position)
        for call_id in [c for c, step in self.tool_steps.items() if step == index]:
            del self.tool_steps[call_id]  # a tool call's step closed: its call is over too
        duration = max(0, round((self.now.timestamp() - opened["at"]) * 1000))
        if opened["stored"] and self.keeps_steps:
            self.steps.append(StepClosed(index, status, duration, detail, metadata))
            closed: dict[str, Any] = {"index": index, "status": status, "duration_ms": duration}
            if detail is not None:
                closed["detail"] = detail
            if metadata:
                closed["metadata"] = metadata
            self.items.append((EventType.STEP_COMPLETED, closed))

    def _finish(self, terminal: Pushed, content: str, reasoning: str, seq: int) -> list[LoggedEvent]:
        reply = self.reply
        ends: dict[str, MessageStatus] = {
            EventType.MESSAGE_COMPLETED: MessageStatus.COMPLETED,
            EventType.MESSAGE_CANCELLED: MessageStatus.CANCELLED,
        }
        status = ends.get(terminal.type, MessageStatus.FAILED)
        leftover = StepStatus.COMPLETED if status == MessageStatus.COMPLETED else StepStatus.FAILED
        ThoughtStep.objects.filter(message_id=reply.id, status=StepStatus.RUNNING).update(status=leftover)
        duration_ms = _ms(self.now - reply.started_at) if reply.started_at else 0
        usage = self.usage
        data: dict[str, Any] = {"content": content, "reasoning": reasoning, "duration_ms": duration_ms}
        error_code = error_message = ""
        if status == MessageStatus.COMPLETED:
            data |= {
                "usage": {
                    "model": usage.get("model", ""),
                    "prompt_tokens": usage.get("prompt_tokens"),
                    "completion_tokens": usage.get("completion_tokens"),
                    "reasoning_tokens": usage.get("reasoning_tokens"),
                },
                "time_to_first_token_ms": reply.time_to_first_token_ms,
            }
        elif status == MessageStatus.CANCELLED:
            data["reason"] = terminal.data.get("reason") or "cancelled by the agent"
        else:
            error_code = ErrorCode.AGENT_ERROR
            error_message = terminal.data.get("message") or "The assistant could not finish this reply."
            data |= {"code": error_code, "message": error_message}
        event = reply_finish(
            reply_id=reply.id,
            seq=seq,
            status=status,
            event_type=EventType(terminal.type),
            event_data=data,
            content=content,
            reasoning=reasoning,
            duration_ms=duration_ms,
            time_to_first_token_ms=reply.time_to_first_token_ms,
            model=usage.get("model", ""),
            prompt_tokens=usage.get("prompt_tokens"),
            completion_tokens=usage.get("completion_tokens"),
            reasoning_tokens=usage.get("reasoning_tokens"),
            error_code=error_code,
            error_message=error_message,
        )
        if event is None:  # the sweeper ended it first
            raise _refuse(ErrorCode.AGENT_REPLY_ENDED, "The reply has ended; nothing more can be added to it.")
        reply.status = status
        reply.lease_expires_at = None
        _record_ended_on_commit(reply.id, status, error_code=error_code, now=self.now)
        return [event]


# A pushed reply's answer and reasoning together: every push rewrites the content snapshot, so it must stay bounded.
MAX_PUSHED_REPLY_CHARACTERS = 500_000


def _ms(delta: timedelta) -> int:
    return max(0, round(delta.total_seconds() * 1000))

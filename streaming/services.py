"""Writes to the event log and to a running reply (docs/events.md). Synchronous; async callers wrap them.

Every function that appends to a log also writes the rows that mirror it (message status, thought steps, content
snapshots) in the same transaction, so the log and the rows never disagree. Sequence numbers are guarded by the
``(message, seq)`` unique constraint: a writer that finds its seq taken has lost the message (``LogConflict``).
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
from django.db.models import Max
from django.utils import timezone

from chat.models import ChatSession, Message, MessageStatus, StepStatus, ThoughtStep
from config.errors import ErrorCode
from streaming import metrics
from streaming.events import EventType, LoggedEvent
from streaming.models import Event
from streaming.selectors import content_from_log


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
        row = ThoughtStep.objects.only("metadata").get(message_id=message_id, index=step.index)
        changes["metadata"] = {**row.metadata, **step.metadata}
    ThoughtStep.objects.filter(message_id=message_id, index=step.index).update(**changes)


def reply_claim(*, reply_id: uuid.UUID, lease_seconds: float) -> tuple[Message, LoggedEvent] | None:
    """Take a queued reply for running: queued → running with a lease, and a ``status`` event.

    None if the reply is not queued, or another reply of its session is running (it waits its turn: the running
    one's runner, or the sweeper, starts it later). The session row is locked so two claims cannot both pass.
    """
    with transaction.atomic():
        reply = (
            Message.objects.filter(id=reply_id, status=MessageStatus.QUEUED).select_related("session__tenant").first()
        )
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
            updated_at=now,
        )
        if claimed != 1:
            return None
        seq = log_next_seq(message_id=reply_id)
        (event,) = _insert(reply_id, seq, [(EventType.STATUS, {"status": MessageStatus.RUNNING})])
        reply.status = MessageStatus.RUNNING
        reply.started_at = now
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
    try:
        with transaction.atomic():
            swept = Message.objects.filter(id=reply_id, status=MessageStatus.RUNNING, lease_expires_at__lt=now).update(
                status=MessageStatus.INTERRUPTED,
                error_code=ErrorCode.RUN_INTERRUPTED,
                error_message=INTERRUPTED_MESSAGE,
                lease_expires_at=None,
                finished_at=now,
                updated_at=now,
            )
            if not swept:
                return None
            content, reasoning, last_seq = content_from_log(message_id=reply_id)
            Message.objects.filter(id=reply_id).update(content=content, reasoning=reasoning, snapshot_seq=last_seq)
            ThoughtStep.objects.filter(message_id=reply_id, status=StepStatus.RUNNING).update(status=StepStatus.FAILED)
            (event,) = _insert(
                reply_id,
                last_seq + 1,
                [
                    (
                        EventType.MESSAGE_FAILED,
                        {
                            "code": ErrorCode.RUN_INTERRUPTED,
                            "message": INTERRUPTED_MESSAGE,
                            "content": content,
                            "reasoning": reasoning,
                        },
                    )
                ],
            )
            _record_ended_on_commit(reply_id, MessageStatus.INTERRUPTED, error_code=ErrorCode.RUN_INTERRUPTED, now=now)
    except IntegrityError:
        return None  # the runner is alive after all and wrote first; the next sweep looks again
    return event


def logs_compact(*, now: datetime, batch: int = 500) -> int:
    """Remove the event logs of replies finished longer ago than their tenant's retention; returns how many."""
    from tenants.models import Tenant

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

"""Reads of sessions, messages and event logs, with their relations loaded in a fixed number of queries
(docs/architecture.md). Writes are in ``chat.services``."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import CharField, Count, Exists, Max, OuterRef, Prefetch, Q, QuerySet, Value
from django.db.models.functions import Cast, Coalesce, NullIf
from django.utils import timezone

from chat.events import EventType, LoggedEvent
from chat.models import ChatSession, Event, FallbackReport, Message, MessageStatus, Role, ThoughtStep
from tenants.models import Agent, Tenant

# How many earlier messages an agent sees; older turns are left out of the prompt, never deleted.
CONVERSATION_WINDOW = 40


def session_get_for_credential(*, tenant_id: int, session_id: uuid.UUID) -> ChatSession | None:
    """The session, only if it belongs to ``tenant_id`` and that tenant is active."""
    return (
        ChatSession.objects.select_related("tenant")
        .filter(id=session_id, tenant_id=tenant_id, tenant__is_active=True)
        .first()
    )


def message_get_for_credential(*, tenant_id: int, session_id: uuid.UUID, message_id: uuid.UUID) -> Message | None:
    """The message, only if it is in ``session_id`` of ``tenant_id`` and that tenant is active."""
    return (
        Message.objects.select_related("session__tenant")
        .filter(id=message_id, session_id=session_id, session__tenant_id=tenant_id, session__tenant__is_active=True)
        .first()
    )


def _with_steps(queryset: QuerySet[Message]) -> QuerySet[Message]:
    return queryset.prefetch_related(Prefetch("steps", queryset=ThoughtStep.objects.order_by("index")))


def session_messages(*, session: ChatSession) -> list[Message]:
    """The session's history, oldest first, each message with its thought steps (two queries, and one more per
    reply still running, whose content comes from its event log)."""
    return fill_live_content(list(_with_steps(Message.objects.filter(session=session).order_by("created_at", "id"))))


def message_get_with_steps(*, message_id: uuid.UUID) -> Message:
    return _with_steps(Message.objects.filter(id=message_id)).get()


def reply_for_client_message(*, session: ChatSession, client_message_id: str) -> tuple[Message, Message] | None:
    """The user message with this idempotency key and the reply to it, if the key was used in the session."""
    user_message = (
        Message.objects.filter(session=session, client_message_id=client_message_id).select_related("reply").first()
    )
    if user_message is None:
        return None
    return user_message, user_message.reply


def conversation_before(*, reply: Message) -> list[Message]:
    """What an agent sees for ``reply``: the user's turns and completed replies before it, oldest first, capped."""
    recent = (
        Message.objects.filter(session_id=reply.session_id, created_at__lt=reply.created_at)
        .filter(Q(role=Role.USER) | Q(role=Role.ASSISTANT, status=MessageStatus.COMPLETED))
        .order_by("-created_at", "-id")
    )
    return list(reversed(recent[:CONVERSATION_WINDOW]))


def fallback_counts(*, tenant_id: int, since: datetime) -> dict[str, int]:
    """Fallback reports of a tenant since ``since``, counted by reason (one grouped query)."""
    rows = (
        FallbackReport.objects.filter(tenant_id=tenant_id, created_at__gte=since)
        .values_list("reason")
        .annotate(n=Count("id"))
        .order_by()
    )
    return {reason: n for reason, n in rows}


# How many events one read returns at most; readers page with the last seq they got.
PAGE = 500


def events_after(*, message_id: uuid.UUID, after: int, limit: int = PAGE) -> list[LoggedEvent]:
    """The message's events with seq > after, in order."""
    rows = Event.objects.filter(message_id=message_id, seq__gt=after).order_by("seq")[:limit]
    return [
        LoggedEvent(message_id=message_id, seq=row.seq, type=row.type, data=row.data, created_at=row.created_at)
        for row in rows
    ]


def log_last_seq(*, message_id: uuid.UUID) -> int:
    return Event.objects.filter(message_id=message_id).aggregate(last=Max("seq"))["last"] or 0


def content_from_log(*, message_id: uuid.UUID) -> tuple[str, str, int]:
    """The reply's content and reasoning so far: its snapshot plus the deltas logged after it; and the last seq."""
    message = Message.objects.only("content", "reasoning", "snapshot_seq").get(id=message_id)
    content, reasoning = [message.content], [message.reasoning]
    last = message.snapshot_seq
    rows = Event.objects.filter(message_id=message_id, seq__gt=message.snapshot_seq).order_by("seq")
    for seq, kind, data in rows.values_list("seq", "type", "data"):
        last = seq
        if kind == EventType.TEXT_DELTA:
            content.append(data.get("delta", ""))
        elif kind == EventType.REASONING_DELTA:
            reasoning.append(data.get("delta", ""))
    return "".join(content), "".join(reasoning), last


def fill_live_content(messages: list[Message]) -> list[Message]:
    """Bring unfinished replies' content and reasoning up to the newest logged delta (in memory, not saved)."""
    for message in messages:
        if not message.is_finished and message.log_compacted_at is None and message.role == "assistant":
            message.content, message.reasoning, _ = content_from_log(message_id=message.id)
    return messages


@dataclass(frozen=True, slots=True)
class RolloutPreview:
    """How many of a tenant's recent sessions (and distinct visitors) would stream at ``percentage``."""

    percentage: int
    since: datetime
    sessions: int
    streaming_sessions: int
    visitors: int
    streaming_visitors: int


def rollout_preview(*, tenant: Tenant, percentage: int, days: int = 7) -> RolloutPreview:
    """Count recent sessions by their stored bucket (``tenants.rollout``): the answer the same visitors would get at
    ``percentage`` (ignoring ``streaming_enabled``, which the admin previews separately). Two queries on an indexed
    range."""
    since = timezone.now() - timedelta(days=days)
    recent = ChatSession.objects.filter(tenant=tenant, created_at__gte=since)
    inside = recent.filter(rollout_bucket__lte=percentage)
    visitor = Coalesce(NullIf("visitor_id", Value("")), Cast("id", CharField()))
    totals = recent.aggregate(sessions=Count("id"), visitors=Count(visitor, distinct=True))
    streaming = inside.aggregate(sessions=Count("id"), visitors=Count(visitor, distinct=True))
    return RolloutPreview(
        percentage=percentage,
        since=since,
        sessions=totals["sessions"],
        streaming_sessions=streaming["sessions"],
        visitors=totals["visitors"],
        streaming_visitors=streaming["visitors"],
    )


def reply_next_queued(*, session_id: uuid.UUID) -> uuid.UUID | None:
    """The session's oldest queued reply, which starts when the running one ends (double texting)."""
    return (
        Message.objects.filter(session_id=session_id, status=MessageStatus.QUEUED)
        .order_by("created_at")
        .values_list("id", flat=True)
        .first()
    )


def message_status(*, message_id: uuid.UUID) -> str:
    return Message.objects.filter(id=message_id).values_list("status", flat=True).get()


def message_session_id(*, message_id: uuid.UUID) -> uuid.UUID:
    return Message.objects.values_list("session_id", flat=True).get(id=message_id)


def replies_with_lapsed_lease(*, now: datetime, limit: int = 200) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """Running replies whose worker stopped renewing their lease: (reply id, session id), for the sweeper."""
    rows = Message.objects.filter(status=MessageStatus.RUNNING, lease_expires_at__lt=now).values_list(
        "id", "session_id"
    )
    return list(rows[:limit])


def replies_stalled_in_queue(*, now: datetime, after: timedelta, limit: int = 50) -> list[uuid.UUID]:
    """Replies queued for longer than ``after`` with nothing running in their session: the worker that was to start
    them is gone. Oldest first."""
    running = Message.objects.filter(session_id=OuterRef("session_id"), status=MessageStatus.RUNNING)
    rows = (
        Message.objects.filter(status=MessageStatus.QUEUED, created_at__lt=now - after)
        .exclude(Exists(running))
        .exclude(session__tenant__agent=Agent.EXTERNAL)  # a tenant's own agent claims those
        .order_by("created_at")
        .values_list("id", flat=True)
    )
    return list(rows[:limit])


def replies_in_progress_cursors(*, session_id: uuid.UUID) -> dict[uuid.UUID, int]:
    """The session's queued and running replies, each with the last seq of its log: where a new WebSocket's live
    delivery starts."""
    active = Message.objects.filter(
        session_id=session_id, status__in=[MessageStatus.QUEUED, MessageStatus.RUNNING]
    ).values_list("id", flat=True)
    return {message_id: log_last_seq(message_id=message_id) for message_id in active}


def replies_of_own_agents_due(*, now: datetime, stop_grace: timedelta) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """Queued or running replies of tenants whose agent is their own that are past their tenant's
    ``max_stream_seconds`` (queued since, or running since), or asked to stop ``stop_grace`` ago: (reply id, session
    id), oldest first, for the sweeper (one query; ``chat.services.reply_time_out`` ends each)."""
    rows = (
        Message.objects.filter(
            session__tenant__agent=Agent.EXTERNAL, status__in=[MessageStatus.QUEUED, MessageStatus.RUNNING]
        )
        .order_by("created_at")
        .values_list(
            "id",
            "session_id",
            "status",
            "created_at",
            "started_at",
            "cancel_requested_at",
            "session__tenant__max_stream_seconds",
        )
    )
    due = []
    for reply_id, session_id, status, created_at, started_at, cancel_requested_at, seconds in rows[:1000]:
        since = created_at if status == MessageStatus.QUEUED else (started_at or created_at)
        stopped = cancel_requested_at is not None and cancel_requested_at < now - stop_grace
        if since < now - timedelta(seconds=seconds) or (status == MessageStatus.RUNNING and stopped):
            due.append((reply_id, session_id))
    return due

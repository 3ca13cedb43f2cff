"""Reads of sessions and messages, with their relations loaded in a fixed number of queries."""

from __future__ import annotations

import uuid
from datetime import datetime

from django.db.models import Count, Prefetch, Q, QuerySet

from chat.models import ChatSession, FallbackReport, Message, MessageStatus, Role, ThoughtStep

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
    from streaming.selectors import fill_live_content

    return fill_live_content(list(_with_steps(Message.objects.filter(session=session).order_by("created_at", "id"))))


def message_get_with_steps(*, message_id: uuid.UUID) -> Message:
    return _with_steps(Message.objects.filter(id=message_id)).get()


def message_with_tenant(*, message_id: uuid.UUID) -> Message:
    return Message.objects.select_related("session__tenant").get(id=message_id)


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

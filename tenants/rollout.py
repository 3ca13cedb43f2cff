"""The streaming rollout: which delivery a visitor gets, decided by the server, the same every time (docs/tenants.md).

A visitor falls in a bucket 1-100 from a hash of the tenant and the visitor's id; they stream when streaming is
enabled and their bucket is at most ``streaming_percentage``. So the same visitor always gets the same answer, raising
the percentage only adds visitors (everyone in at 30 % is still in at 60 %), 0 gives nobody and 100 everybody. Unlike
seed 004's ``Math.random() * 100 < percentage`` per request, a visitor never flips between transports mid-conversation.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import CharField, Count, Value
from django.db.models.functions import Cast, Coalesce, NullIf
from django.utils import timezone

from tenants.models import Tenant

STREAM = "stream"
# What a session can be given: streaming, or the tenant's fallback (FallbackDelivery).
SESSION_DELIVERIES = [STREAM, "poll", "batch"]


def rollout_bucket(*, tenant_id: int, visitor_key: str) -> int:
    """1-100, uniform over visitors, fixed for a (tenant, visitor) pair; independent between tenants."""
    digest = hashlib.sha256(f"brook.rollout.v1:{tenant_id}:{visitor_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100 + 1


def delivery_for(*, tenant: Tenant, bucket: int) -> str:
    """``stream`` inside the rollout; otherwise the tenant's fallback (``poll`` or ``batch``)."""
    if tenant.streaming_enabled and bucket <= tenant.streaming_percentage:
        return STREAM
    return str(tenant.fallback_delivery)


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
    """Count recent sessions by their stored bucket: the answer the same visitors would get at ``percentage``
    (ignoring ``streaming_enabled``, which the admin previews separately). Two queries on an indexed range."""
    from chat.models import ChatSession

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

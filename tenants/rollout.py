"""The streaming rollout: which delivery a visitor gets, decided by the server, the same every time (docs/tenants.md).

A visitor falls in a bucket 1-100 from a hash of the tenant and the visitor's id; they stream when streaming is
enabled and their bucket is at most ``streaming_percentage``. So the same visitor always gets the same answer, raising
the percentage only adds visitors (everyone in at 30 % is still in at 60 %), 0 gives nobody and 100 everybody. Unlike
seed 004's ``Math.random() * 100 < percentage`` per request, a visitor never flips between transports mid-conversation.
``chat.selectors.rollout_preview`` counts what a percentage would give a tenant's recent sessions.
"""

from __future__ import annotations

import hashlib

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

"""Reads of tenants (docs/tenants.md)."""

from __future__ import annotations

from tenants.keys import key_matches, key_prefix
from tenants.models import ServerKey, Tenant


def tenant_get_active(*, public_key: str) -> Tenant | None:
    """The active tenant with this widget key, or None (unknown and inactive keys look the same to callers)."""
    if not public_key or len(public_key) > 64:
        return None
    return Tenant.objects.filter(public_key=public_key, is_active=True).first()


def server_key_for(*, presented: str) -> ServerKey | None:
    """The unrevoked key of an active tenant that ``presented`` is, with its tenant; None for anything else
    (malformed, unknown, revoked, wrong secret or inactive tenant look the same to callers)."""
    prefix = key_prefix(presented)
    if prefix is None:
        return None
    key = (
        ServerKey.objects.select_related("tenant")
        .filter(prefix=prefix, revoked_at__isnull=True, tenant__is_active=True)
        .first()
    )
    if key is None or not key_matches(presented, key.secret_hash):
        return None
    return key

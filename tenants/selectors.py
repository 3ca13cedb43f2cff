"""Reads of tenants (docs/tenants.md)."""

from __future__ import annotations

from tenants.models import Tenant


def tenant_get_active(*, public_key: str) -> Tenant | None:
    """The active tenant with this widget key, or None (unknown and inactive keys look the same to callers)."""
    if not public_key or len(public_key) > 64:
        return None
    return Tenant.objects.filter(public_key=public_key, is_active=True).first()

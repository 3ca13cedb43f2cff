"""Which web origins may use a tenant's widget: the CORS middleware (``config/cors.py``) and the WebSocket handshake
both decide here (docs/security.md, "Origins and CORS").

A tenant lists exact origins (``https://shop.example.com``); there are no wildcards, and ``*`` is never sent. A
request without an ``Origin`` header is not a browser's cross-origin request (curl, a server, a same-origin GET) and
is left to the token checks; Brook's own pages are same-origin and always allowed.
"""

from __future__ import annotations

import contextlib
import logging

from django.core.cache import cache
from django.core.exceptions import ValidationError

from core.errors import ApiError, ErrorCode
from tenants.models import Tenant, normalize_origin

logger = logging.getLogger(__name__)

ANY_TENANT_CACHE_SECONDS = 30
_ANY_TENANT_KEY = "brook:origins:any"


def canonical(origin: str) -> str | None:
    """The origin as tenants store it, or None for ``null``, garbage, or anything that is not an http(s) origin."""
    try:
        return normalize_origin(origin)
    except ValidationError:
        return None


def origin_allowed(tenant: Tenant, origin: str) -> bool:
    found = canonical(origin)
    return found is not None and found in tenant.allowed_origins


def origin_check(tenant: Tenant, origin: str, *, own_origin: str = "") -> None:
    """403 ``ORIGIN_NOT_ALLOWED`` if a browser on ``origin`` may not use this tenant's widget."""
    if not origin or origin == own_origin or origin_allowed(tenant, origin):
        return
    raise ApiError(
        ErrorCode.ORIGIN_NOT_ALLOWED,
        f"{origin[:100]} is not among this assistant's allowed origins.",
        status_code=403,
    )


def any_tenant_allows(origin: str) -> bool:
    """Whether some active tenant allows ``origin``: enough to answer a preflight, which carries no credential and
    unlocks nothing (the request that follows is checked against its own tenant). Cached for a few seconds."""
    found = canonical(origin)
    if found is None:
        return False
    try:
        origins: set[str] | None = cache.get(_ANY_TENANT_KEY)
    except Exception:  # Redis away: answer from the database, uncached
        logger.warning("Origin cache unavailable; reading allowed origins from the database", exc_info=True)
        origins = None
    if origins is None:
        origins = set()
        for allowed in Tenant.objects.filter(is_active=True).values_list("allowed_origins", flat=True):
            origins.update(allowed)
        with contextlib.suppress(Exception):
            cache.set(_ANY_TENANT_KEY, origins, timeout=ANY_TENANT_CACHE_SECONDS)
    return found in origins


def origins_changed() -> None:
    """Forget the cached union of origins (tenant writes call this after commit)."""
    try:
        cache.delete(_ANY_TENANT_KEY)
    except Exception:  # Redis away; the cached union lapses within ANY_TENANT_CACHE_SECONDS anyway
        logger.warning("Could not clear the origin cache", exc_info=True)

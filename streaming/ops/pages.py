"""Project-level pages: the demo site, the liveness check (/healthz) and the readiness check (/readyz).

See docs/operations.md.
"""

from __future__ import annotations

import asyncio
import logging
import secrets

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.cache import cache
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from core.errors import ErrorCode, error_body
from tenants.services import DEMO_PUBLIC_KEY

logger = logging.getLogger(__name__)


@require_GET
def demo_page(request: HttpRequest) -> HttpResponse:
    """Brook's own demo site: a page that talks to the demo tenant."""
    return render(request, "demo.html", {"tenant_key": DEMO_PUBLIC_KEY})


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the database answers; 503 otherwise (for load balancers and `make run-prod`)."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception:
        logger.exception("Health check: database unreachable")
        return JsonResponse(error_body(ErrorCode.UNHEALTHY, "The database does not answer."), status=503)
    return JsonResponse({"status": "ok", "database": "ok"})


def _database_migrated() -> None:
    executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
    if executor.migration_plan(executor.loader.graph.leaf_nodes()):
        raise RuntimeError("migrations are not applied")


def _cache_round_trip() -> None:
    key, value = f"brook:ready:{secrets.token_hex(4)}", secrets.token_hex(4)
    cache.set(key, value, timeout=10)
    if cache.get(key) != value:
        raise RuntimeError("the cache lost a value")
    cache.delete(key)


async def _channel_layer_round_trip() -> None:
    layer = get_channel_layer()
    assert layer is not None  # noqa: S101 - settings always configure one
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "ready.check"})
    async with asyncio.timeout(2):
        await layer.receive(channel)


READINESS_CHECKS = {
    "database": _database_migrated,
    "cache": _cache_round_trip,
    "channel_layer": async_to_sync(_channel_layer_round_trip),
}
# Without these a worker still serves (degraded): streams read the database, limits fail open (docs/operations.md,
# "Failures"). Answering 503 for them would take every worker out of the balancer at once for a shared Redis outage.
DEGRADED_ONLY = frozenset({"cache", "channel_layer"})


@require_GET
def readyz(request: HttpRequest) -> JsonResponse:
    """Whether this worker can serve, for load balancers' readiness probes (``/healthz`` is the liveness probe).

    503 naming what failed when the database does not answer or has migrations pending; 200 ``"degraded"`` naming
    the check when only the cache or the channel layer (Redis) fails; 200 ``"ready"`` when all round-trip."""
    checks: dict[str, str] = {}
    for name, check in READINESS_CHECKS.items():
        try:
            check()
        except Exception as error:
            logger.warning("Readiness check %s failed: %s", name, error)
            checks[name] = "failed"
        else:
            checks[name] = "ok"
    failed = [name for name, state in checks.items() if state != "ok"]
    if set(failed) - DEGRADED_ONLY:
        body = error_body(ErrorCode.UNHEALTHY, f"Not ready: {', '.join(failed)}.", {"checks": checks})
        return JsonResponse(body, status=503)
    return JsonResponse({"status": "degraded" if failed else "ready", "checks": checks})

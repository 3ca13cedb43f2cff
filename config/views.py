"""Project-level pages: the demo site and the health check."""

from __future__ import annotations

import logging

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from config.errors import ErrorCode, error_body
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

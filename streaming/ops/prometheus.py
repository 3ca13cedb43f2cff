"""``GET /metrics``: Prometheus' text format of ``core.metrics``, for allowed networks or a bearer token
(docs/metrics.md, "Who may read it")."""

from __future__ import annotations

import ipaddress
import secrets

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from core.errors import ApiError, ErrorCode
from core.limits import client_ip
from core.metrics import generate_latest


def _allowed_networks() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(raw, strict=False) for raw in settings.BROOK_METRICS_ALLOWED_NETWORKS]


def may_read_metrics(request: HttpRequest) -> bool:
    token = settings.BROOK_METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer ") and secrets.compare_digest(header[7:].strip(), token):
        return True
    try:
        address = ipaddress.ip_address(client_ip(request.META))
    except ValueError:
        return False
    return any(address in network for network in _allowed_networks())


@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    """``GET /metrics``: Prometheus' text format, for allowed networks or the bearer token; else 403 ``FORBIDDEN``."""
    if not may_read_metrics(request):
        return ApiError(
            ErrorCode.FORBIDDEN,
            "Metrics are served to BROOK_METRICS_ALLOWED_NETWORKS or with the BROOK_METRICS_TOKEN bearer token.",
            status_code=403,
        ).response()
    return HttpResponse(generate_latest(), content_type=CONTENT_TYPE_LATEST)

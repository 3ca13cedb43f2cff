"""Per-tenant CORS for the widget API (docs/security.md, "Origins and CORS").

For ``/api/v1/`` only; the agent API under ``/api/v1/agent/`` is for servers, and any request there that carries an
``Origin`` (a browser's) is refused with 403 ``ORIGIN_NOT_ALLOWED``, preflights included. Elsewhere, a browser request
with an ``Origin`` header is matched to every tenant it names (its token's tenant, the ``tenant`` key in the query,
the ``tenant`` in a JSON body) and refused with 403 ``ORIGIN_NOT_ALLOWED`` unless each of them lists the origin;
allowed responses echo the exact origin (never ``*``) with ``Vary: Origin``.
Brook authenticates with bearer tokens, never cookies, so ``Access-Control-Allow-Credentials`` is never sent.
Preflights carry no credential: they are answered for any origin some active tenant allows.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase
from django.utils.cache import patch_vary_headers

from chat.tokens import TokenError, TokenKind, session_token_read
from core.errors import ApiError, ErrorCode
from tenants.models import Tenant
from tenants.origins import any_tenant_allows, origin_check
from tenants.selectors import tenant_get_active

API_PREFIX = "/api/v1/"
# The agent API is for tenants' servers (server keys), never browsers: a request there with an Origin is refused.
SERVER_PREFIX = "/api/v1/agent/"
ALLOW_METHODS = "GET, POST, OPTIONS"
ALLOW_HEADERS = "Authorization, Content-Type, Last-Event-ID"
EXPOSE_HEADERS = "Retry-After"
PREFLIGHT_MAX_AGE = "600"


def _own_origin(request: HttpRequest) -> str:
    return f"{request.scheme}://{request.get_host()}"


def _tenant_id_from_token(request: HttpRequest) -> int | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        token, kind = value.strip(), TokenKind.SESSION
    else:
        token, kind = request.GET.get("token", ""), TokenKind.STREAM
    if not token:
        return None
    try:
        return session_token_read(token, kind=kind).tenant_id
    except TokenError:
        return None  # the view answers 401; this token names no tenant


def _tenant_key_from_body(request: HttpRequest) -> str:
    if request.method != "POST" or request.content_type != "application/json":
        return ""
    if int(request.META.get("CONTENT_LENGTH") or 0) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
        return ""  # the view refuses it as too large (413) before reading a word of it
    try:
        body = json.loads(request.body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return ""
    key = body.get("tenant") if isinstance(body, dict) else None
    return key if isinstance(key, str) else ""


def request_tenants(request: HttpRequest) -> list[Tenant]:
    """Every active tenant a widget request names: its token's, the ``tenant`` key in its query, the ``tenant`` in a
    JSON body. The origin must be allowed by each of them, so naming a neighbour's key beside this tenant's (in
    another place than the view reads) opens nothing."""
    tenants: list[Tenant] = []
    tenant_id = _tenant_id_from_token(request)
    if tenant_id is not None:
        tenants.extend(Tenant.objects.filter(pk=tenant_id, is_active=True))
    for key in {request.GET.get("tenant", ""), _tenant_key_from_body(request)} - {""}:
        found = tenant_get_active(public_key=key)
        if found is not None:
            tenants.append(found)
    return tenants


def _preflight(request: HttpRequest, origin: str) -> HttpResponse:
    if not any_tenant_allows(origin) and origin != _own_origin(request):
        return HttpResponse(status=403)
    response = HttpResponse(status=204)
    response["Access-Control-Allow-Origin"] = origin
    response["Access-Control-Allow-Methods"] = ALLOW_METHODS
    response["Access-Control-Allow-Headers"] = ALLOW_HEADERS
    response["Access-Control-Max-Age"] = PREFLIGHT_MAX_AGE
    response["Vary"] = "Origin"
    return response


def _allow(response: HttpResponseBase, origin: str) -> HttpResponseBase:
    response["Access-Control-Allow-Origin"] = origin
    response["Access-Control-Expose-Headers"] = EXPOSE_HEADERS
    return response


def _finish(request: HttpRequest, response: HttpResponseBase, readable: bool) -> HttpResponseBase:
    """Every API answer varies by Origin (a cache must never hand one origin's answer to another)."""
    patch_vary_headers(response, ["Origin"])
    return _allow(response, request.headers["Origin"]) if readable else response


def _before(request: HttpRequest) -> tuple[HttpResponseBase | None, bool]:
    """(an answer that ends the request here, or None; whether the response may be read from the origin)."""
    origin = request.headers.get("Origin", "")
    if request.path.startswith(SERVER_PREFIX):
        refused = ApiError(
            ErrorCode.ORIGIN_NOT_ALLOWED,
            "The agent API is for servers: browsers may not call it, and a server key must never reach one.",
            status_code=403,
        )
        return refused.response(), False
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        return _preflight(request, origin), False
    tenants = request_tenants(request)
    if not tenants:
        # Unknown tenant or bad token: the view answers 4xx; let the widget read why if its origin is known at all.
        return None, any_tenant_allows(origin) or origin == _own_origin(request)
    try:
        for tenant in tenants:
            origin_check(tenant, origin, own_origin=_own_origin(request))
    except ApiError as error:
        return error.response(), False
    return None, True


class TenantCorsMiddleware:
    """Refuse widget requests from origins their tenant does not list; add CORS headers to the rest."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        if not request.path.startswith(API_PREFIX):
            return self.get_response(request)
        if "Origin" not in request.headers:
            return _finish(request, self.get_response(request), readable=False)
        answer, readable = _before(request)
        return _finish(request, answer if answer is not None else self.get_response(request), readable)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]] = self.get_response
        if not request.path.startswith(API_PREFIX):
            return await get_response(request)
        if "Origin" not in request.headers:
            return _finish(request, await get_response(request), readable=False)
        answer, readable = await sync_to_async(_before)(request)
        return _finish(request, answer if answer is not None else await get_response(request), readable)

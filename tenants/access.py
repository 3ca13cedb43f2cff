"""The one place a server key becomes a tenant (docs/agents.md, "Server keys"; docs/security.md).

Routes for a tenant's own servers (the agent API, under ``/api/v1/agent/``) subclass ``ServerKeyAPIView``:
``Authorization: Bearer <server key>`` is required (401 ``AUTH_REQUIRED`` without it, 401 ``AUTH_INVALID`` for a key
that is malformed, unknown, revoked or of an inactive tenant), and ``self.tenant`` is the key's tenant, never one
named in the request. Browsers are refused before these views run (``config.cors``).
"""

from __future__ import annotations

from typing import Any

from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from core.errors import ApiError, ErrorCode
from tenants.models import ServerKey, Tenant
from tenants.selectors import server_key_for
from tenants.services import server_key_touch


class ServerKeyAuthentication(BaseAuthentication):
    """``Authorization: Bearer <server key>``; the request's ``auth`` is the ``ServerKey``."""

    def authenticate(self, request: Request) -> tuple[None, ServerKey] | None:
        header = request.headers.get("Authorization", "")
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise ApiError(ErrorCode.AUTH_INVALID, "Use 'Authorization: Bearer <server key>'.", status_code=401)
        key = server_key_for(presented=value.strip())
        if key is None:
            raise ApiError(ErrorCode.AUTH_INVALID, "The server key is not valid, or it was revoked.", status_code=401)
        server_key_touch(key=key)
        return None, key

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="brook"'


class HasServerKey(BasePermission):
    """Requires a valid server key."""

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.auth, ServerKey)


class ServerKeyAPIView(APIView):
    """Base of every route for a tenant's servers: a server key required, everything scoped to its tenant."""

    authentication_classes = [ServerKeyAuthentication]
    permission_classes = [HasServerKey]

    @property
    def server_key(self) -> ServerKey:
        auth = self.request.auth
        assert isinstance(auth, ServerKey)  # noqa: S101 - guaranteed by HasServerKey
        return auth

    @property
    def tenant(self) -> Tenant:
        """The key's tenant: the only tenant this request can see or touch."""
        return self.server_key.tenant

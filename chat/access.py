"""Who may read what: the one place that turns a session token into the session it may touch (docs/api.md).

Every session route subclasses ``SessionScopedAPIView``; it never looks a session up by id alone, only through
``session_for_credential``, so another tenant's token, or a token for another session, finds nothing (404).
"""

from __future__ import annotations

import uuid
from typing import Any

from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.views import APIView

from chat.models import ChatSession
from chat.selectors import session_get_for_credential
from chat.tokens import SessionCredential, TokenError, session_token_read
from config.errors import ApiError, ErrorCode


def parse_uuid(value: str, *, not_found: ErrorCode) -> uuid.UUID:
    """A path id as a UUID; anything else is a 404 with ``not_found`` (no such object can exist)."""
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        raise ApiError(not_found, "No such object.", status_code=404) from None


class SessionTokenAuthentication(BaseAuthentication):
    """``Authorization: Bearer <token>``, or ``?token=`` where a browser cannot send headers (EventSource)."""

    def authenticate(self, request: Request) -> tuple[None, SessionCredential] | None:
        header = request.headers.get("Authorization", "")
        token = ""
        if header:
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise ApiError(ErrorCode.AUTH_INVALID, "Use 'Authorization: Bearer <session token>'.", status_code=401)
            token = value.strip()
        else:
            token = request.query_params.get("token", "")
        if not token:
            return None
        try:
            return None, session_token_read(token)
        except TokenError as error:
            if error.expired:
                raise ApiError(
                    ErrorCode.AUTH_EXPIRED, "The session token has expired; start a new session.", status_code=401
                ) from None
            raise ApiError(ErrorCode.AUTH_INVALID, "The session token is not valid.", status_code=401) from None

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="brook"'


class HasSessionToken(BasePermission):
    """Requires a valid session token; which session it opens is decided by ``session_for_credential``."""

    def has_permission(self, request: Request, view: Any) -> bool:
        return isinstance(request.auth, SessionCredential)


def session_for_credential(credential: SessionCredential, session_id: uuid.UUID) -> ChatSession | None:
    """The session ``credential`` may act in, if it is ``session_id``; None for every other session or tenant."""
    if credential.session_id != session_id:
        return None
    return session_get_for_credential(tenant_id=credential.tenant_id, session_id=session_id)


class SessionScopedAPIView(APIView):
    """Base for every route that acts in a session: token required, lookups scoped to the token's session."""

    authentication_classes = [SessionTokenAuthentication]
    permission_classes = [HasSessionToken]

    @property
    def credential(self) -> SessionCredential:
        auth = self.request.auth
        assert isinstance(auth, SessionCredential)  # noqa: S101 - guaranteed by HasSessionToken
        return auth

    def get_session(self, session_id: str) -> ChatSession:
        """The session in the URL, if the token opens it; otherwise 404, the same for absent and foreign ids."""
        session = session_for_credential(self.credential, parse_uuid(session_id, not_found=ErrorCode.SESSION_NOT_FOUND))
        if session is None:
            raise ApiError(ErrorCode.SESSION_NOT_FOUND, "No such session.", status_code=404)
        return session

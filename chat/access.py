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

from chat.models import ChatSession, Message
from chat.selectors import message_get_for_credential, session_get_for_credential
from chat.tokens import SessionCredential, TokenError, session_token_read
from config.errors import ApiError, ErrorCode


def parse_uuid(value: str, *, not_found: ErrorCode) -> uuid.UUID:
    """A path id as a UUID; anything else is a 404 with ``not_found`` (no such object can exist)."""
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        raise ApiError(not_found, "No such object.", status_code=404) from None


def credential_from(*, authorization: str, token_param: str) -> SessionCredential | None:
    """The credential in ``Authorization: Bearer <token>`` or else a ``token`` query parameter; None if neither.

    Every transport (REST, polling, SSE, WebSocket) reads tokens here. Raises ApiError (401) for a bad one.
    """
    token = ""
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise ApiError(ErrorCode.AUTH_INVALID, "Use 'Authorization: Bearer <session token>'.", status_code=401)
        token = value.strip()
    else:
        token = token_param
    if not token:
        return None
    try:
        return session_token_read(token)
    except TokenError as error:
        if error.expired:
            raise ApiError(
                ErrorCode.AUTH_EXPIRED, "The session token has expired; start a new session.", status_code=401
            ) from None
        raise ApiError(ErrorCode.AUTH_INVALID, "The session token is not valid.", status_code=401) from None


def require_credential(*, authorization: str, token_param: str) -> SessionCredential:
    credential = credential_from(authorization=authorization, token_param=token_param)
    if credential is None:
        raise ApiError(ErrorCode.AUTH_REQUIRED, "A session token is required.", status_code=401)
    return credential


class SessionTokenAuthentication(BaseAuthentication):
    """``Authorization: Bearer <token>``, or ``?token=`` where a browser cannot send headers (EventSource)."""

    def authenticate(self, request: Request) -> tuple[None, SessionCredential] | None:
        credential = credential_from(
            authorization=request.headers.get("Authorization", ""), token_param=request.query_params.get("token", "")
        )
        return None if credential is None else (None, credential)

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


def message_for_credential(credential: SessionCredential, message_id: uuid.UUID) -> Message | None:
    """The message, if it belongs to the one session ``credential`` opens; None otherwise (404 for callers)."""
    return message_get_for_credential(
        tenant_id=credential.tenant_id, session_id=credential.session_id, message_id=message_id
    )


def get_session_or_404(credential: SessionCredential, session_id: str) -> ChatSession:
    session = session_for_credential(credential, parse_uuid(session_id, not_found=ErrorCode.SESSION_NOT_FOUND))
    if session is None:
        raise ApiError(ErrorCode.SESSION_NOT_FOUND, "No such session.", status_code=404)
    return session


def get_message_or_404(credential: SessionCredential, message_id: str) -> Message:
    message = message_for_credential(credential, parse_uuid(message_id, not_found=ErrorCode.MESSAGE_NOT_FOUND))
    if message is None:
        raise ApiError(ErrorCode.MESSAGE_NOT_FOUND, "No such message.", status_code=404)
    return message


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
        return get_session_or_404(self.credential, session_id)

    def get_message(self, message_id: str) -> Message:
        """The message in the URL, if it is in the token's session; otherwise 404."""
        return get_message_or_404(self.credential, message_id)

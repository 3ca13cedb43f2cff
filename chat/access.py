"""Who may read what: the one place that turns a token into the session it may touch (docs/security.md).

REST (``SessionScopedAPIView``), polling and SSE (``streaming.transports.http``) and the WebSocket consumer
(``streaming.transports.websocket``) all read credentials with ``credential_from`` and find sessions and messages
only through ``session_for_credential`` and ``message_for_credential``; nothing looks a session up by id alone, so
another tenant's token, or a token for another session, finds nothing (404). ``require_streaming`` is the one check
that a session may use a streaming transport.
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
from chat.tokens import SessionCredential, TokenError, TokenKind, session_token_read
from core.errors import ApiError, ErrorCode
from tenants.rollout import STREAM


def parse_uuid(value: str, *, not_found: ErrorCode) -> uuid.UUID:
    """A path id as a UUID; anything else is a 404 with ``not_found`` (no such object can exist)."""
    try:
        return uuid.UUID(value)
    except (ValueError, TypeError, AttributeError):
        raise ApiError(not_found, "No such object.", status_code=404) from None


def _read(token: str, kind: TokenKind) -> SessionCredential:
    try:
        return session_token_read(token, kind=kind)
    except TokenError as error:
        if error.expired:
            hint = "start a new session" if kind == TokenKind.SESSION else "get a new one from the stream-token route"
            raise ApiError(ErrorCode.AUTH_EXPIRED, f"The {kind} token has expired; {hint}.", status_code=401) from None
        if kind == TokenKind.STREAM and _is_session_token(token):
            raise ApiError(
                ErrorCode.AUTH_INVALID,
                "A session token may not travel in a URL; send it as 'Authorization: Bearer', or put a stream "
                "token (POST /api/v1/sessions/{id}/stream-token) in the URL.",
                status_code=401,
            ) from None
        raise ApiError(ErrorCode.AUTH_INVALID, f"The {kind} token is not valid.", status_code=401) from None


def _is_session_token(token: str) -> bool:
    try:
        session_token_read(token, kind=TokenKind.SESSION)
    except TokenError:
        return False
    return True


def credential_from(*, authorization: str, token_param: str) -> SessionCredential | None:
    """The credential in ``Authorization: Bearer <session token>`` or else a ``token`` URL parameter holding a
    short-lived stream token; None if neither.

    Every transport (REST, polling, SSE, WebSocket) reads tokens here. Raises ApiError (401) for a bad one.
    """
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise ApiError(ErrorCode.AUTH_INVALID, "Use 'Authorization: Bearer <session token>'.", status_code=401)
        return _read(value.strip(), TokenKind.SESSION)
    if token_param:
        return _read(token_param, TokenKind.STREAM)
    return None


def require_credential(*, authorization: str, token_param: str) -> SessionCredential:
    credential = credential_from(authorization=authorization, token_param=token_param)
    if credential is None:
        raise ApiError(ErrorCode.AUTH_REQUIRED, "A session token is required.", status_code=401)
    return credential


class SessionTokenAuthentication(BaseAuthentication):
    """``Authorization: Bearer <session token>`` only. REST routes can always send a header; a stream token (which
    travels in URLs and so in logs) opens only the streaming routes, and never buys a fresh token."""

    def authenticate(self, request: Request) -> tuple[None, SessionCredential] | None:
        authorization = request.headers.get("Authorization", "")
        if not authorization and request.query_params.get("token"):
            raise ApiError(
                ErrorCode.AUTH_INVALID,
                "A token in the URL opens only streams (SSE, polling, WebSocket); send the session token as "
                "'Authorization: Bearer <token>'.",
                status_code=401,
            )
        credential = credential_from(authorization=authorization, token_param="")
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


def require_streaming(session: ChatSession) -> None:
    """Streaming transports (SSE, fetch streaming, EventSource start, WebSocket) need the tenant's streaming switch
    on and the session placed in the rollout when it was created; otherwise 403 ``STREAM_002``."""
    if not session.tenant.streaming_enabled:
        raise ApiError(ErrorCode.STREAM_NOT_AUTHORIZED, "Streaming is not enabled for this tenant.", status_code=403)
    if session.delivery != STREAM:
        raise ApiError(
            ErrorCode.STREAM_NOT_AUTHORIZED,
            f"This session was not placed in the streaming rollout; use {session.delivery} delivery.",
            status_code=403,
            details={"delivery": session.delivery},
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

"""Session tokens: signed, expiring, bound to one tenant and one session (docs/security.md, "Tokens").

A token is opaque to clients. It carries the tenant and session ids, signed with SECRET_KEY under a salt of its kind,
and a timestamp checked against its kind's lifetime. Nothing is stored server-side. Two kinds:

- a **session token** (``BROOK_SESSION_TOKEN_TTL``, 7 days) goes only in the ``Authorization`` header;
- a **stream token** (``BROOK_STREAM_TOKEN_TTL``, 5 minutes) goes only in a URL's ``token`` parameter, where a browser
  cannot send headers (EventSource, WebSocket). URLs end up in proxy and server logs, so what travels in them must
  expire soon; the salts differ, so neither kind is accepted where the other belongs.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from django.conf import settings
from django.core import signing
from django.utils import timezone


class TokenKind(StrEnum):
    SESSION = "session"
    STREAM = "stream"


_SALTS = {TokenKind.SESSION: "brook.session-token.v1", TokenKind.STREAM: "brook.stream-token.v1"}


class TokenError(Exception):
    """The token is malformed, forged or expired; ``expired`` tells which."""

    def __init__(self, *, expired: bool) -> None:
        super().__init__("expired" if expired else "invalid")
        self.expired = expired


@dataclass(frozen=True, slots=True)
class SessionCredential:
    """What a valid token proves: the bearer may act in this session of this tenant."""

    tenant_id: int
    session_id: uuid.UUID


def _ttl(kind: TokenKind) -> int:
    return int(settings.BROOK_SESSION_TOKEN_TTL if kind == TokenKind.SESSION else settings.BROOK_STREAM_TOKEN_TTL)


def session_token_issue(
    *, tenant_id: int, session_id: uuid.UUID, kind: TokenKind = TokenKind.SESSION
) -> tuple[str, datetime]:
    """A new token of ``kind`` for the session and the moment it expires."""
    token = signing.dumps({"t": tenant_id, "s": session_id.hex}, salt=_SALTS[kind], compress=True)
    return token, timezone.now() + timedelta(seconds=_ttl(kind))


def session_token_read(token: str, *, kind: TokenKind = TokenKind.SESSION) -> SessionCredential:
    """The credential a token of ``kind`` proves; raises TokenError if it is malformed, forged, of the other kind
    or older than its kind's lifetime."""
    if not token or len(token) > 512:
        raise TokenError(expired=False)
    try:
        payload = signing.loads(token, salt=_SALTS[kind], max_age=_ttl(kind))
    except signing.SignatureExpired:
        raise TokenError(expired=True) from None
    except signing.BadSignature:
        raise TokenError(expired=False) from None
    try:
        return SessionCredential(tenant_id=int(payload["t"]), session_id=uuid.UUID(hex=str(payload["s"])))
    except (KeyError, TypeError, ValueError):
        raise TokenError(expired=False) from None

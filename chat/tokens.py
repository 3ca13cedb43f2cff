"""Session tokens: signed, expiring, bound to one tenant and one session (docs/api.md, "Authentication").

A token is opaque to clients. It carries the tenant and session ids, signed with SECRET_KEY under its own salt, and
a timestamp checked against ``BROOK_SESSION_TOKEN_TTL``. Nothing is stored server-side.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core import signing
from django.utils import timezone

_SALT = "brook.session-token.v1"


class TokenError(Exception):
    """The token is malformed, forged or expired; ``expired`` tells which."""

    def __init__(self, *, expired: bool) -> None:
        super().__init__("expired" if expired else "invalid")
        self.expired = expired


@dataclass(frozen=True, slots=True)
class SessionCredential:
    """What a valid session token proves: the bearer may act in this session of this tenant."""

    tenant_id: int
    session_id: uuid.UUID


def session_token_issue(*, tenant_id: int, session_id: uuid.UUID) -> tuple[str, datetime]:
    """A new token for the session and the moment it expires."""
    token = signing.dumps({"t": tenant_id, "s": session_id.hex}, salt=_SALT, compress=True)
    return token, timezone.now() + timedelta(seconds=settings.BROOK_SESSION_TOKEN_TTL)


def session_token_read(token: str) -> SessionCredential:
    """The credential a token proves; raises TokenError if it is malformed, forged or older than its TTL."""
    if not token or len(token) > 512:
        raise TokenError(expired=False)
    try:
        payload = signing.loads(token, salt=_SALT, max_age=settings.BROOK_SESSION_TOKEN_TTL)
    except signing.SignatureExpired:
        raise TokenError(expired=True) from None
    except signing.BadSignature:
        raise TokenError(expired=False) from None
    try:
        return SessionCredential(tenant_id=int(payload["t"]), session_id=uuid.UUID(hex=str(payload["s"])))
    except (KeyError, TypeError, ValueError):
        raise TokenError(expired=False) from None

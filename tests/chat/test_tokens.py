"""Session tokens are signed, bound to one tenant and session, and expire."""

from __future__ import annotations

import uuid
from unittest import mock

import pytest
from django.core import signing
from pytest_django import Settings

from chat.tokens import SessionCredential, TokenError, session_token_issue, session_token_read


def test_a_token_proves_its_tenant_and_session() -> None:
    session_id = uuid.uuid4()
    token, _ = session_token_issue(tenant_id=7, session_id=session_id)

    assert session_token_read(token) == SessionCredential(tenant_id=7, session_id=session_id)


def test_a_token_expires_after_its_ttl(settings: Settings) -> None:
    settings.BROOK_SESSION_TOKEN_TTL = 60
    token, expires_at = session_token_issue(tenant_id=1, session_id=uuid.uuid4())

    with (
        mock.patch("django.core.signing.time.time", return_value=expires_at.timestamp() + 1),
        pytest.raises(TokenError) as error,
    ):
        session_token_read(token)

    assert error.value.expired


@pytest.mark.parametrize("token", ["", "garbage", "a" * 600, "eyJ0IjoxfQ:1abc:def"])
def test_garbage_is_not_a_token(token: str) -> None:
    with pytest.raises(TokenError) as error:
        session_token_read(token)

    assert not error.value.expired


def test_a_token_signed_for_another_purpose_is_rejected() -> None:
    other = signing.dumps({"t": 1, "s": uuid.uuid4().hex}, salt="some.other.salt")

    with pytest.raises(TokenError):
        session_token_read(other)


def test_a_well_signed_token_with_a_bad_payload_is_rejected() -> None:
    bad = signing.dumps({"t": "x", "s": "not-a-uuid"}, salt="brook.session-token.v1", compress=True)

    with pytest.raises(TokenError):
        session_token_read(bad)

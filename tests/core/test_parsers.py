"""Bad input gets a clear 4xx with a stable code, never a 500, and stores nothing."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from rest_framework.test import APIClient

from chat.models import Message
from tenants.models import Tenant
from tests.conftest import SessionInfo

pytestmark = pytest.mark.django_db


def post(api: APIClient, session: SessionInfo, raw: str) -> tuple[int, dict[str, object]]:
    response = api.post(session.messages_url, raw, content_type="application/json", **session.auth)
    return response.status_code, response.json()


def test_json_nested_too_deeply_is_a_400(api: APIClient, session: SessionInfo) -> None:
    status, body = post(api, session, "[" * 100_000 + "]" * 100_000)

    assert (status, body["code"]) == (400, "INVALID_JSON")
    assert not Message.objects.exists()


def test_a_body_over_one_mebibyte_is_a_413_in_json(api: APIClient, session: SessionInfo) -> None:
    status, body = post(api, session, json.dumps({"content": "x" * (1024 * 1024)}))

    assert (status, body["code"]) == (413, "PAYLOAD_TOO_LARGE")
    assert not Message.objects.exists()


@pytest.mark.parametrize("content", [123, 1.5, True, None, ["hi"], {"text": "hi"}])
def test_content_must_be_a_string(api: APIClient, session: SessionInfo, content: object) -> None:
    status, body = post(api, session, json.dumps({"content": content}))

    assert (status, body["code"]) == (400, "INVALID_INPUT")
    assert not Message.objects.exists()


@pytest.mark.parametrize("raw", ['{"content": "a\\u0000b"}', '{"content": "\\ud800 lone surrogate"}'])
def test_text_that_cannot_be_stored_as_text_is_refused(api: APIClient, session: SessionInfo, raw: str) -> None:
    status, body = post(api, session, raw)

    assert (status, body["code"]) == (400, "INVALID_INPUT")
    assert not Message.objects.exists()


@pytest.mark.parametrize("body", [[], "just a string", 42])
def test_a_body_that_is_not_an_object_is_a_400(api: APIClient, session: SessionInfo, body: object) -> None:
    status, answer = post(api, session, json.dumps(body))

    assert (status, answer["code"]) == (400, "INVALID_INPUT")


def test_session_creation_takes_only_strings(api: APIClient, tenant: Tenant) -> None:
    response = api.post("/api/v1/sessions", {"tenant": tenant.public_key, "visitor_id": 7}, format="json")

    assert response.status_code == 400 and response.json()["code"] == "INVALID_INPUT"


def test_markup_is_stored_as_text_and_escaped_where_it_is_shown(
    api: APIClient, session: SessionInfo, staff_client: Client
) -> None:
    payload = '<img src=x onerror="alert(1)"><script>alert(2)</script>'

    response = api.post(session.messages_url, {"content": payload}, format="json", **session.auth)

    assert response.status_code == 200
    stored = Message.objects.get(role="user")
    assert stored.content == payload  # verbatim: text, never sanitized into something else
    page = staff_client.get(f"/admin/chat/chatsession/{session.id}/change/").content.decode()
    assert "<script>alert(2)</script>" not in page and "&lt;script&gt;alert(2)&lt;/script&gt;" in page

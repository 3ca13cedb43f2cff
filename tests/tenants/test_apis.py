"""GET /api/v1/widget/config: what the widget needs, for active tenants only."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tenants.models import Tenant
from tenants.services import tenant_update

pytestmark = pytest.mark.django_db

URL = "/api/v1/widget/config"


def test_it_returns_the_tenants_widget_config(api: APIClient, tenant: Tenant) -> None:
    response = api.get(URL, {"tenant": tenant.public_key})

    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"tenant", "features", "endpoints", "limits"}
    assert body["tenant"] == {"name": "Acme Shop", "public_key": tenant.public_key}
    assert body["features"] == {"streaming_enabled": True, "streaming_percentage": 50}
    assert body["limits"] == {"messages_per_minute": 10, "max_stream_seconds": 30, "max_message_length": 8000}
    assert body["endpoints"] == {
        "sessions": "http://testserver/api/v1/sessions",
        "chat": "http://testserver/api/v1/sessions/{session_id}/messages",
        "history": "http://testserver/api/v1/sessions/{session_id}",
        "poll": "http://testserver/api/v1/messages/{message_id}",
        "stream": "http://testserver/api/v1/messages/{message_id}/stream",
        "websocket": "ws://testserver/ws/v1/sessions/{session_id}",
    }


def test_over_https_the_websocket_endpoint_is_wss(api: APIClient, tenant: Tenant) -> None:
    endpoints = api.get(URL, {"tenant": tenant.public_key}, secure=True).json()["endpoints"]

    assert endpoints["chat"].startswith("https://testserver/")
    assert endpoints["websocket"] == "wss://testserver/ws/v1/sessions/{session_id}"


def test_it_reflects_the_tenants_current_flags_and_limits(api: APIClient, tenant: Tenant) -> None:
    tenant_update(tenant=tenant, streaming_enabled=False, streaming_percentage=5, max_message_length=500)

    body = api.get(URL, {"tenant": tenant.public_key}).json()

    assert body["features"] == {"streaming_enabled": False, "streaming_percentage": 5}
    assert body["limits"]["max_message_length"] == 500


def test_it_never_shows_another_tenants_data(api: APIClient, tenant: Tenant, other_tenant: Tenant) -> None:
    mine = api.get(URL, {"tenant": tenant.public_key}).content.decode()
    theirs = api.get(URL, {"tenant": other_tenant.public_key}).json()

    assert other_tenant.public_key not in mine and other_tenant.name not in mine
    assert theirs["tenant"] == {"name": "Globex", "public_key": other_tenant.public_key}
    assert theirs["features"] == {"streaming_enabled": False, "streaming_percentage": 0}


def test_it_never_shows_secrets_or_private_settings(api: APIClient, tenant: Tenant) -> None:
    tenant_update(tenant=tenant, agent="llm", llm_api_key_secret="ACME_KEY", llm_system_prompt="Internal instructions")

    body = api.get(URL, {"tenant": tenant.public_key}).content.decode()

    assert "ACME_KEY" not in body and "Internal instructions" not in body


@pytest.mark.parametrize("query", [{}, {"tenant": ""}])
def test_a_missing_key_is_400(api: APIClient, query: dict[str, str]) -> None:
    response = api.get(URL, query)

    assert response.status_code == 400
    body = response.json()
    assert set(body) == {"code", "message"}
    assert body["code"] == "INVALID_INPUT"


@pytest.mark.parametrize("key", ["unknown", "x" * 100, "demo"])
def test_an_unknown_key_is_404(api: APIClient, tenant: Tenant, key: str) -> None:
    response = api.get(URL, {"tenant": key})

    assert response.status_code == 404
    assert response.json() == {"code": "TENANT_NOT_FOUND", "message": "No active tenant has this key."}


def test_an_inactive_tenant_is_404_like_an_unknown_one(api: APIClient, tenant: Tenant) -> None:
    tenant_update(tenant=tenant, is_active=False)

    response = api.get(URL, {"tenant": tenant.public_key})

    assert response.status_code == 404
    assert response.json() == {"code": "TENANT_NOT_FOUND", "message": "No active tenant has this key."}


def test_writes_are_not_allowed(api: APIClient, tenant: Tenant) -> None:
    response = api.post(f"{URL}?tenant={tenant.public_key}", {}, format="json")

    assert response.status_code == 405
    assert response.json()["code"] == "METHOD_NOT_ALLOWED"
    assert set(response.json()) == {"code", "message"}

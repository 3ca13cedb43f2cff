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
    assert set(body) == {"tenant", "features", "delivery", "endpoints", "limits"}
    assert body["tenant"] == {"name": "Acme Shop", "public_key": tenant.public_key}
    assert body["features"] == {
        "streaming_enabled": True,
        "streaming_percentage": 100,
        "thought_visibility": "full",
    }
    assert body["delivery"] is None  # decided per visitor: no visitor_id, no decision yet
    assert body["limits"] == {
        "messages_per_minute": 10,
        "max_stream_seconds": 30,
        "max_message_length": 8000,
        "max_streams_per_session": 3,
    }
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

    assert body["features"]["streaming_enabled"] is False and body["features"]["streaming_percentage"] == 5
    assert body["limits"]["max_message_length"] == 500


def test_it_never_shows_another_tenants_data(api: APIClient, tenant: Tenant, other_tenant: Tenant) -> None:
    mine = api.get(URL, {"tenant": tenant.public_key}).content.decode()
    theirs = api.get(URL, {"tenant": other_tenant.public_key}).json()

    assert other_tenant.public_key not in mine and other_tenant.name not in mine
    assert theirs["tenant"] == {"name": "Globex", "public_key": other_tenant.public_key}
    assert theirs["features"]["streaming_enabled"] is False and theirs["features"]["streaming_percentage"] == 0


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


@pytest.mark.parametrize(
    ("enabled", "percentage", "fallback", "expected"),
    [(True, 100, "poll", "stream"), (True, 0, "poll", "poll"), (False, 100, "batch", "batch")],
)
def test_with_a_visitor_id_it_says_which_delivery_that_visitor_gets(
    api: APIClient, tenant: Tenant, enabled: bool, percentage: int, fallback: str, expected: str
) -> None:
    tenant_update(tenant=tenant, streaming_enabled=enabled, streaming_percentage=percentage, fallback_delivery=fallback)

    body = api.get(URL, {"tenant": tenant.public_key, "visitor_id": "browser-1"}).json()

    assert body["delivery"] == expected


def test_the_config_and_the_session_agree_on_a_visitors_delivery(api: APIClient, tenant: Tenant) -> None:
    tenant_update(tenant=tenant, streaming_percentage=50)
    visitors = [f"browser-{n}" for n in range(40)]

    from_config = [api.get(URL, {"tenant": tenant.public_key, "visitor_id": v}).json()["delivery"] for v in visitors]
    from_sessions = [
        api.post("/api/v1/sessions", {"tenant": tenant.public_key, "visitor_id": v}, format="json").json()["delivery"]
        for v in visitors[:10]
    ]

    assert from_sessions == from_config[:10]
    assert {"stream", "poll"} == set(from_config)  # 40 visitors at 50 %: both answers occur


def test_a_visitor_id_over_128_characters_is_a_400(api: APIClient, tenant: Tenant) -> None:
    response = api.get(URL, {"tenant": tenant.public_key, "visitor_id": "v" * 129})

    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_INPUT"

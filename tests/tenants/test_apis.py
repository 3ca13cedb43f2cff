"""GET /api/v1/widget/config: what the widget needs, for active tenants only."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tenants.models import Tenant

pytestmark = pytest.mark.django_db


def test_it_returns_the_tenants_widget_config(api: APIClient, tenant: Tenant) -> None:
    response = api.get("/api/v1/widget/config", {"tenant": tenant.public_key})

    assert response.status_code == 200
    body = response.json()
    assert body["tenant"] == {"name": "Acme Shop", "public_key": tenant.public_key}
    assert body["features"] == {"streaming_enabled": True, "streaming_percentage": 50}
    assert body["limits"] == {"messages_per_minute": 10, "max_stream_seconds": 30, "max_message_length": 8000}
    endpoints = body["endpoints"]
    assert endpoints["chat"] == "http://testserver/api/v1/sessions/{session_id}/messages"
    assert endpoints["poll"].endswith("/api/v1/messages/{message_id}")
    assert endpoints["stream"].endswith("/api/v1/messages/{message_id}/stream")
    assert endpoints["websocket"] == "ws://testserver/ws/v1/sessions/{session_id}"


def test_it_never_shows_another_tenants_data(api: APIClient, tenant: Tenant, other_tenant: Tenant) -> None:
    body = api.get("/api/v1/widget/config", {"tenant": tenant.public_key}).content.decode()

    assert other_tenant.public_key not in body and other_tenant.name not in body


def test_a_missing_key_is_400(api: APIClient) -> None:
    response = api.get("/api/v1/widget/config")

    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_INPUT"


@pytest.mark.parametrize("key", ["unknown", "x" * 100])
def test_an_unknown_key_is_404(api: APIClient, tenant: Tenant, key: str) -> None:
    response = api.get("/api/v1/widget/config", {"tenant": key})

    assert response.status_code == 404
    assert response.json() == {"code": "TENANT_NOT_FOUND", "message": "No active tenant has this key."}


def test_an_inactive_tenant_is_404(api: APIClient, tenant: Tenant) -> None:
    Tenant.objects.filter(pk=tenant.pk).update(is_active=False)

    assert api.get("/api/v1/widget/config", {"tenant": tenant.public_key}).status_code == 404

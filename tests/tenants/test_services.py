"""Tenant services: create, update and the demo tenant."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from tenants.models import Tenant
from tenants.services import tenant_create, tenant_ensure_demo, tenant_update

pytestmark = pytest.mark.django_db


def test_equal_names_get_unique_slugs_and_origins_are_normalized() -> None:
    first = tenant_create(name="Acme Shop", allowed_origins=["https://Acme.example:443/"])
    second = tenant_create(name="Acme Shop")

    assert (first.slug, second.slug) == ("acme-shop", "acme-shop-2")
    assert first.allowed_origins == ["https://acme.example"]


def test_unknown_fields_and_bad_values_are_refused() -> None:
    with pytest.raises(TypeError):
        tenant_create(name="X", colour="blue")
    with pytest.raises(ValidationError):
        tenant_create(name="X", streaming_percentage=150)
    with pytest.raises(ValidationError):
        tenant_create(name="X", allowed_origins=["not an origin"])
    assert not Tenant.objects.exists()


def test_update_changes_only_what_it_is_given(tenant: Tenant) -> None:
    Tenant.objects.filter(pk=tenant.pk).update(name="Changed elsewhere")

    tenant_update(tenant=tenant, streaming_percentage=70)

    tenant.refresh_from_db()
    assert tenant.streaming_percentage == 70
    assert tenant.name == "Changed elsewhere"


def test_update_refuses_fields_brook_manages(tenant: Tenant) -> None:
    with pytest.raises(TypeError):
        tenant_update(tenant=tenant, public_key="mine")
    with pytest.raises(ValidationError):
        tenant_update(tenant=tenant, max_stream_seconds=0)


def test_the_demo_tenant_is_ensured_once() -> None:
    tenant, created = tenant_ensure_demo()
    again, created_again = tenant_ensure_demo()

    assert (created, created_again) == (True, False)
    assert again.pk == tenant.pk
    assert tenant.public_key == "demo"
    assert tenant.allowed_origins == ["http://127.0.0.1:8000", "http://localhost:8000"]
    assert (tenant.streaming_enabled, tenant.streaming_percentage, tenant.agent) == (True, 100, "demo")

"""Tenant services: create, update and the demo tenant."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ValidationError

from tenants.models import Tenant
from tenants.services import EDITABLE_FIELDS, tenant_create, tenant_ensure_demo, tenant_update

pytestmark = pytest.mark.django_db


def test_create_gives_equal_names_unique_slugs() -> None:
    slugs = [tenant_create(name="Acme Shop").slug for _ in range(3)]

    assert slugs == ["acme-shop", "acme-shop-2", "acme-shop-3"]


def test_create_falls_back_to_a_plain_slug_when_the_name_has_no_latin_letters() -> None:
    first = tenant_create(name="東京")
    second = tenant_create(name="!!!")

    assert (first.slug, second.slug) == ("tenant", "tenant-2")


def test_create_keeps_slugs_of_long_names_within_the_column() -> None:
    name = "A very long shop name " * 10
    tenants = [tenant_create(name=name[:200]) for _ in range(2)]

    assert all(len(tenant.slug) <= 80 for tenant in tenants)
    assert tenants[0].slug != tenants[1].slug


def test_create_stores_origins_normalized() -> None:
    tenant = tenant_create(name="Acme", allowed_origins=["https://Acme.example:443/", "http://[::1]:3000"])

    tenant.refresh_from_db()
    assert tenant.allowed_origins == ["http://[::1]:3000", "https://acme.example"]


def test_create_uses_the_models_defaults_for_what_it_is_not_given() -> None:
    tenant = tenant_create(name="Plain")

    tenant.refresh_from_db()
    assert tenant.is_active and not tenant.streaming_enabled
    assert (tenant.streaming_percentage, tenant.agent, tenant.allowed_origins) == (0, "demo", [])


@pytest.mark.parametrize("fields", [{"colour": "blue"}, {"created_at": None}, {"id": 7}])
def test_create_rejects_unknown_fields(fields: dict[str, Any]) -> None:
    with pytest.raises(TypeError):
        tenant_create(name="X", **fields)

    assert not Tenant.objects.exists()


@pytest.mark.parametrize(
    "fields",
    [
        {"streaming_percentage": 150},
        {"allowed_origins": ["not an origin"]},
        {"allowed_origins": "https://example.com"},
        {"agent": "skynet"},
        {"messages_per_minute": 0},
        {"double_texting": "shout"},
        {"llm_api_key_secret": "sk-live key with spaces"},
        {"llm_thinking_budget": 10},
    ],
)
def test_create_rejects_invalid_values(fields: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        tenant_create(name="X", **fields)

    assert not Tenant.objects.exists()


def test_create_rejects_a_taken_slug(tenant: Tenant) -> None:
    with pytest.raises(ValidationError) as error:
        tenant_create(name="Other", slug=tenant.slug)

    assert "slug" in error.value.message_dict


def test_update_saves_only_the_fields_it_is_given(tenant: Tenant) -> None:
    Tenant.objects.filter(pk=tenant.pk).update(name="Changed elsewhere", max_stream_seconds=45)

    tenant_update(tenant=tenant, streaming_percentage=70)

    tenant.refresh_from_db()
    assert tenant.streaming_percentage == 70
    assert (tenant.name, tenant.max_stream_seconds) == ("Changed elsewhere", 45)


def test_update_moves_updated_at(tenant: Tenant) -> None:
    before = tenant.updated_at

    tenant_update(tenant=tenant, streaming_enabled=False)

    tenant.refresh_from_db()
    assert tenant.updated_at > before and not tenant.streaming_enabled


def test_update_normalizes_origins(tenant: Tenant) -> None:
    tenant_update(tenant=tenant, allowed_origins=["HTTPS://New.Example:443"])

    tenant.refresh_from_db()
    assert tenant.allowed_origins == ["https://new.example"]


@pytest.mark.parametrize(
    "changes", [{"public_key": "mine"}, {"created_at": None}, {"id": 99}, {"streaming_percentage": 1, "colour": "x"}]
)
def test_update_rejects_fields_that_are_not_editable(tenant: Tenant, changes: dict[str, Any]) -> None:
    key = tenant.public_key

    with pytest.raises(TypeError):
        tenant_update(tenant=tenant, **changes)

    tenant.refresh_from_db()
    assert (tenant.public_key, tenant.streaming_percentage) == (key, 100)


@pytest.mark.parametrize(
    "changes",
    [
        {"max_stream_seconds": 0},
        {"streaming_percentage": 101},
        {"allowed_origins": ["https://example.com/path"]},
        {"streaming_percentage": 10, "agent": "skynet"},
    ],
)
def test_update_rejects_invalid_values_and_saves_nothing(tenant: Tenant, changes: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        tenant_update(tenant=tenant, **changes)

    tenant.refresh_from_db()
    assert (tenant.streaming_percentage, tenant.max_stream_seconds, tenant.agent) == (100, 30, "demo")
    assert tenant.allowed_origins == ["https://shop.example.com"]


def test_every_editable_field_is_a_tenant_field() -> None:
    names = {field.name for field in Tenant._meta.get_fields()}

    assert set(EDITABLE_FIELDS) <= names
    assert not {"id", "public_key", "created_at", "updated_at"} & set(EDITABLE_FIELDS)


def test_ensure_demo_creates_the_demo_tenant() -> None:
    tenant, created = tenant_ensure_demo()

    assert created
    tenant.refresh_from_db()
    assert tenant.public_key == "demo" and tenant.is_active
    assert tenant.allowed_origins == ["http://127.0.0.1:8000", "http://localhost:8000"]
    assert (tenant.streaming_enabled, tenant.streaming_percentage, tenant.agent) == (True, 100, "demo")


def test_ensure_demo_is_idempotent_and_keeps_an_operators_changes() -> None:
    tenant, _ = tenant_ensure_demo()
    tenant_update(tenant=tenant, streaming_percentage=10)

    again, created_again = tenant_ensure_demo()

    assert not created_again
    assert again.pk == tenant.pk and again.streaming_percentage == 10
    assert Tenant.objects.filter(public_key="demo").count() == 1

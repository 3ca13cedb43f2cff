"""Tenant fields: origins are normalized, the rollout percentage is bounded in forms and in the database."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from tenants.models import Tenant, new_public_key, normalize_origin
from tenants.services import tenant_create


@pytest.mark.parametrize(
    ("raw", "origin"),
    [
        ("https://Shop.Example.com", "https://shop.example.com"),
        ("https://shop.example.com:443/", "https://shop.example.com"),
        ("http://localhost:80", "http://localhost"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("http://[::1]:3000", "http://[::1]:3000"),
    ],
)
def test_origins_are_normalized(raw: str, origin: str) -> None:
    assert normalize_origin(raw) == origin


@pytest.mark.parametrize(
    "raw",
    [
        "shop.example.com",
        "ftp://example.com",
        "https://example.com/path",
        "https://example.com?x=1",
        "https://:99",
        "https://example.com:99999",
        "",
    ],
)
def test_anything_but_an_origin_is_rejected(raw: str) -> None:
    with pytest.raises(ValidationError):
        normalize_origin(raw)


@pytest.mark.django_db
def test_the_percentage_is_validated_in_forms(tenant: Tenant) -> None:
    for good in (0, 100):
        tenant.streaming_percentage = good
        tenant.full_clean()
    tenant.streaming_percentage = 101
    with pytest.raises(ValidationError) as error:
        tenant.full_clean()
    assert "streaming_percentage" in error.value.message_dict


@pytest.mark.django_db
def test_the_database_refuses_a_percentage_over_100(tenant: Tenant) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        Tenant.objects.filter(pk=tenant.pk).update(streaming_percentage=101)


@pytest.mark.django_db
def test_public_keys_are_long_random_and_unique() -> None:
    keys = {new_public_key() for _ in range(200)}
    assert len(keys) == 200
    assert all(len(key) >= 20 and key.replace("-", "").replace("_", "").isalnum() for key in keys)
    first = tenant_create(name="One")
    with pytest.raises(ValidationError):
        tenant_create(name="Two", public_key=first.public_key)

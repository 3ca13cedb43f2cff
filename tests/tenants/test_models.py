"""Tenant fields: origins are normalized, the rollout percentage is bounded in forms and in the database."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from tenants.models import Tenant, new_public_key, normalize_origin, validate_origins
from tenants.services import tenant_create

URL_SAFE = re.compile(r"^[A-Za-z0-9_-]+$")


@pytest.mark.parametrize(
    ("raw", "origin"),
    [
        ("https://Shop.Example.COM", "https://shop.example.com"),
        ("HTTPS://shop.example.com", "https://shop.example.com"),
        ("https://shop.example.com:443", "https://shop.example.com"),
        ("http://localhost:80", "http://localhost"),
        ("https://shop.example.com/", "https://shop.example.com"),
        ("  https://shop.example.com:443/  ", "https://shop.example.com"),
        ("http://shop.example.com:443", "http://shop.example.com:443"),
        ("https://shop.example.com:80", "https://shop.example.com:80"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("http://[::1]:3000", "http://[::1]:3000"),
        ("http://[::1]:80/", "http://[::1]"),
        ("https://[2001:DB8::1]", "https://[2001:db8::1]"),
    ],
)
def test_it_normalizes_an_origin(raw: str, origin: str) -> None:
    assert normalize_origin(raw) == origin


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "not an origin",
        "shop.example.com",
        "//shop.example.com",
        "ftp://example.com",
        "ws://example.com",
        "javascript:alert(1)",
        "file:///etc/passwd",
        "https://example.com/path",
        "https://example.com/widget/",
        "https://example.com?x=1",
        "https://example.com/#top",
        "https://user:secret@example.com",
        "https://",
        "https://:99",
        "https://example.com:99999",
        "https://example.com:port",
    ],
)
def test_it_rejects_anything_but_an_origin(raw: str) -> None:
    with pytest.raises(ValidationError):
        normalize_origin(raw)


@pytest.mark.parametrize(
    "value", ["https://example.com", [1, 2], ["https://example.com", None], {"origin": "https://example.com"}]
)
def test_it_rejects_allowed_origins_that_are_not_a_list_of_strings(value: Any) -> None:
    with pytest.raises(ValidationError):
        validate_origins(value)


def test_it_accepts_an_empty_list_of_origins() -> None:
    validate_origins([])


@pytest.mark.django_db
def test_full_clean_stores_origins_normalized_sorted_and_without_duplicates(tenant: Tenant) -> None:
    tenant.allowed_origins = ["https://B.example:443/", "https://a.example", "https://b.example"]

    tenant.full_clean()

    assert tenant.allowed_origins == ["https://a.example", "https://b.example"]


@pytest.mark.django_db
def test_full_clean_names_the_origins_field_when_an_origin_is_bad(tenant: Tenant) -> None:
    tenant.allowed_origins = ["https://fine.example", "https://bad.example/path"]

    with pytest.raises(ValidationError) as error:
        tenant.full_clean()

    assert "allowed_origins" in error.value.message_dict


@pytest.mark.django_db
@pytest.mark.parametrize("percentage", [0, 100])
def test_full_clean_accepts_a_percentage_from_0_to_100(tenant: Tenant, percentage: int) -> None:
    tenant.streaming_percentage = percentage

    tenant.full_clean()


@pytest.mark.django_db
def test_full_clean_rejects_a_percentage_over_100(tenant: Tenant) -> None:
    tenant.streaming_percentage = 101

    with pytest.raises(ValidationError) as error:
        tenant.full_clean()

    assert "streaming_percentage" in error.value.message_dict


@pytest.mark.django_db
def test_the_database_refuses_a_percentage_over_100(tenant: Tenant) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        Tenant.objects.filter(pk=tenant.pk).update(streaming_percentage=101)

    tenant.refresh_from_db()
    assert tenant.streaming_percentage == 100


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["messages_per_minute", "max_stream_seconds", "max_message_length"])
def test_the_database_refuses_a_zero_limit(tenant: Tenant, field: str) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        Tenant.objects.filter(pk=tenant.pk).update(**{field: 0})


def test_public_keys_are_long_url_safe_and_unique() -> None:
    keys = {new_public_key() for _ in range(500)}

    assert len(keys) == 500
    assert all(len(key) >= 20 and URL_SAFE.match(key) for key in keys)
    assert not any(key.startswith("-") for key in keys)  # a command line would read it as an option


@pytest.mark.django_db
def test_each_tenant_gets_its_own_public_key(tenant: Tenant, other_tenant: Tenant) -> None:
    assert tenant.public_key != other_tenant.public_key
    assert len(tenant.public_key) >= 20 and URL_SAFE.match(tenant.public_key)


@pytest.mark.django_db
def test_a_public_key_cannot_be_shared(tenant: Tenant) -> None:
    with pytest.raises(ValidationError) as error:
        tenant_create(name="Copycat", public_key=tenant.public_key)
    assert "public_key" in error.value.message_dict

    with pytest.raises(IntegrityError), transaction.atomic():
        Tenant.objects.create(name="Copycat", slug="copycat", public_key=tenant.public_key)

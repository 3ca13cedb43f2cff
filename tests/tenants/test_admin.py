"""The tenant admin: rollout flags editable in the list, validated like every other write."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from tenants.models import Tenant

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/tenants/tenant/"


def change_url(tenant: Tenant) -> str:
    return f"{CHANGELIST}{tenant.pk}/change/"


def test_the_changelist_shows_the_rollout_flags(staff_client: Client, tenant: Tenant, other_tenant: Tenant) -> None:
    response = staff_client.get(CHANGELIST)

    assert response.status_code == 200
    html = response.content.decode()
    assert "Acme Shop" in html and "Globex" in html
    assert tenant.public_key in html
    assert 'name="form-0-streaming_percentage"' in html and 'name="form-0-streaming_enabled"' in html


def test_the_change_and_add_pages_render(staff_client: Client, tenant: Tenant) -> None:
    page = staff_client.get(change_url(tenant))
    add = staff_client.get(f"{CHANGELIST}add/")

    assert page.status_code == 200
    assert b"double_texting" in page.content and b"https://shop.example.com" in page.content
    assert add.status_code == 200


def _list_edit(client: Client, tenant: Tenant, percentage: str) -> Any:
    return client.post(
        CHANGELIST,
        {
            "form-TOTAL_FORMS": "1",
            "form-INITIAL_FORMS": "1",
            "form-MIN_NUM_FORMS": "0",
            "form-MAX_NUM_FORMS": "1000",
            "form-0-id": str(tenant.pk),
            "form-0-streaming_enabled": "on",
            "form-0-streaming_percentage": percentage,
            "_save": "Save",
        },
    )


def test_the_percentage_is_editable_in_the_list(staff_client: Client, tenant: Tenant) -> None:
    response = _list_edit(staff_client, tenant, "80")

    assert response.status_code == 302
    tenant.refresh_from_db()
    assert (tenant.streaming_enabled, tenant.streaming_percentage) == (True, 80)


@pytest.mark.parametrize("percentage", ["101", "-1", "many"])
def test_a_percentage_outside_0_to_100_is_refused_in_the_list(
    staff_client: Client, tenant: Tenant, percentage: str
) -> None:
    response = _list_edit(staff_client, tenant, percentage)

    assert response.status_code == 200  # the list comes back with the form's error
    assert response.context["cl"].formset.errors[0]["streaming_percentage"]
    tenant.refresh_from_db()
    assert tenant.streaming_percentage == 50


def _change_form_data(client: Client, tenant: Tenant) -> dict[str, Any]:
    """What the change form would post back untouched, read from the form the page rendered."""
    form = client.get(change_url(tenant)).context["adminform"].form
    data: dict[str, Any] = {}
    for name, field in form.fields.items():
        value = field.prepare_value(form[name].value())
        if value is True:
            data[name] = "on"
        elif value is not None and value is not False:
            data[name] = value
    return data


def test_the_change_form_stores_origins_normalized(staff_client: Client, tenant: Tenant) -> None:
    data = _change_form_data(staff_client, tenant)
    data["allowed_origins"] = json.dumps(["https://Shop.Example.com:443/", "http://localhost:8000"])

    response = staff_client.post(change_url(tenant), data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    tenant.refresh_from_db()
    assert tenant.allowed_origins == ["http://localhost:8000", "https://shop.example.com"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("allowed_origins", json.dumps(["https://shop.example.com/widget"])),
        ("allowed_origins", json.dumps("https://shop.example.com")),
        ("streaming_percentage", "101"),
        ("max_stream_seconds", "0"),
    ],
)
def test_the_change_form_refuses_bad_values(staff_client: Client, tenant: Tenant, field: str, value: str) -> None:
    data = _change_form_data(staff_client, tenant)
    data[field] = value

    response = staff_client.post(change_url(tenant), data)

    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    tenant.refresh_from_db()
    assert (tenant.allowed_origins, tenant.streaming_percentage) == (["https://shop.example.com"], 50)
    assert tenant.max_stream_seconds == 30


@pytest.mark.parametrize("path", [CHANGELIST, f"{CHANGELIST}add/"])
def test_anonymous_visitors_are_sent_to_the_login(client: Client, path: str) -> None:
    response = client.get(path)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")

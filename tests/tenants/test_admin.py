"""The tenant admin: rollout flags editable in the list, validated."""

from __future__ import annotations

import pytest
from django.test import Client

from tenants.models import Tenant

pytestmark = pytest.mark.django_db


def test_the_changelist_and_change_page_render(staff_client: Client, tenant: Tenant) -> None:
    listing = staff_client.get("/admin/tenants/tenant/")
    page = staff_client.get(f"/admin/tenants/tenant/{tenant.pk}/change/")

    assert listing.status_code == 200 and b"streaming_percentage" in listing.content
    assert page.status_code == 200 and b"double_texting" in page.content


def _list_edit(client: Client, tenant: Tenant, percentage: str) -> int:
    response = client.post(
        "/admin/tenants/tenant/",
        {
            "form-TOTAL_FORMS": "1",
            "form-INITIAL_FORMS": "1",
            "form-0-id": str(tenant.pk),
            "form-0-streaming_enabled": "on",
            "form-0-streaming_percentage": percentage,
            "_save": "Save",
        },
    )
    return response.status_code


def test_the_percentage_is_editable_in_the_list(staff_client: Client, tenant: Tenant) -> None:
    assert _list_edit(staff_client, tenant, "80") == 302

    tenant.refresh_from_db()
    assert tenant.streaming_percentage == 80


def test_a_percentage_over_100_is_refused_in_the_list(staff_client: Client, tenant: Tenant) -> None:
    assert _list_edit(staff_client, tenant, "101") == 200  # the form comes back with its error

    tenant.refresh_from_db()
    assert tenant.streaming_percentage == 50


def test_anonymous_visitors_are_sent_to_the_login(client: Client) -> None:
    assert client.get("/admin/tenants/tenant/").status_code == 302

"""The tenant admin: rollout flags editable in the list and in bulk, every write recorded in the tenant's history, a
rollout preview, and staff who work for one tenant confined to it."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.auth.models import User
from django.contrib.messages import get_messages
from django.test import Client
from django.utils import timezone

from chat.models import ChatSession, FallbackReason, FallbackReport
from tenants.models import ChangeSource, Tenant, TenantChange, TenantMembership
from tenants.services import tenant_create, tenant_update
from tests.conftest import assert_answers_like_a_missing_object, tenant_staff_client

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/tenants/tenant/"


@pytest.fixture
def tenant_staff(tenant: Tenant) -> Client:
    return tenant_staff_client(tenant)


def change_url(tenant: Tenant) -> str:
    return f"{CHANGELIST}{tenant.pk}/change/"


def preview_url(tenant: Tenant) -> str:
    return f"{CHANGELIST}{tenant.pk}/rollout-preview/"


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
    before = tenant.streaming_percentage

    response = _list_edit(staff_client, tenant, percentage)

    assert response.status_code == 200  # the list comes back with the form's error
    assert response.context["cl"].formset.errors[0]["streaming_percentage"]
    tenant.refresh_from_db()
    assert tenant.streaming_percentage == before
    assert tenant.changes.count() == 1  # only its creation


def _form_data(client: Client, url: str) -> dict[str, Any]:
    """What the add or change form would post back untouched, read from the form the page rendered."""
    form = client.get(url).context["adminform"].form
    data: dict[str, Any] = {}
    for name in form.fields:
        value = form[name].value()
        if value is True:
            data[name] = "on"
        elif value is not None and value is not False:
            data[name] = value
    return data


def test_the_change_form_stores_origins_normalized(staff_client: Client, tenant: Tenant) -> None:
    data = _form_data(staff_client, change_url(tenant))
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
    before = Tenant.objects.get(pk=tenant.pk)
    data = _form_data(staff_client, change_url(tenant))
    data[field] = value

    response = staff_client.post(change_url(tenant), data)

    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    tenant.refresh_from_db()
    assert (tenant.allowed_origins, tenant.streaming_percentage) == (
        before.allowed_origins,
        before.streaming_percentage,
    )
    assert tenant.max_stream_seconds == before.max_stream_seconds
    assert tenant.changes.count() == 1  # only its creation


@pytest.mark.parametrize("path", [CHANGELIST, f"{CHANGELIST}add/"])
def test_anonymous_visitors_are_sent_to_the_login(client: Client, path: str) -> None:
    response = client.get(path)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_the_changelist_shows_the_delivery_and_visibility_columns(staff_client: Client, tenant: Tenant) -> None:
    response = staff_client.get(CHANGELIST)

    html = response.content.decode()
    assert "Polling (steps still appear live)" in html
    assert "Everything: steps, tool calls and the model&#x27;s raw reasoning" in html


def test_a_list_edit_is_recorded_in_the_history(staff_client: Client, tenant: Tenant) -> None:
    before = tenant.streaming_percentage

    _list_edit(staff_client, tenant, "80")

    change = tenant.changes.first()
    assert change is not None and change.actor is not None
    assert (change.changes, change.source, change.actor.username) == (
        {"streaming_percentage": [before, 80]},
        ChangeSource.ADMIN,
        "root",
    )


def test_a_tenant_added_in_the_admin_gets_a_key_and_a_history(staff_client: Client) -> None:
    data = _form_data(staff_client, f"{CHANGELIST}add/")
    data.update(name="Initech", slug="initech", streaming_percentage="20", _continue="Save and continue editing")

    response = staff_client.post(f"{CHANGELIST}add/", data)

    tenant = Tenant.objects.get(slug="initech")
    assert response.status_code == 302
    assert response["Location"] == change_url(tenant)
    assert len(tenant.public_key) >= 16
    change = tenant.changes.get()
    assert change.actor is not None and (change.actor.username, change.source) == ("root", ChangeSource.ADMIN)
    assert change.changes["streaming_percentage"] == [None, 20]


def test_the_add_form_shows_no_public_key(staff_client: Client) -> None:
    response = staff_client.get(f"{CHANGELIST}add/")

    assert b"public_key" not in response.content


def test_the_public_key_cannot_be_changed_in_the_admin(staff_client: Client, tenant: Tenant) -> None:
    data = _form_data(staff_client, change_url(tenant))
    data["public_key"] = "chosen-by-hand"

    response = staff_client.post(change_url(tenant), data)

    assert response.status_code == 302
    assert Tenant.objects.get(pk=tenant.pk).public_key == tenant.public_key


def _run_action(client: Client, action: str, tenants: list[Tenant], **extra: str) -> Any:
    return client.post(CHANGELIST, {"action": action, ACTION_CHECKBOX_NAME: [t.pk for t in tenants], **extra})


@pytest.mark.parametrize(("action", "enabled"), [("enable_streaming", True), ("disable_streaming", False)])
def test_the_streaming_actions_change_the_selected_tenants_and_record_each_change(
    staff_client: Client, action: str, enabled: bool
) -> None:
    selected = [tenant_create(name=name, streaming_enabled=not enabled) for name in ("Initech", "Hooli")]
    untouched = tenant_create(name="Umbrella", streaming_enabled=not enabled)

    response = _run_action(staff_client, action, selected, index="0")

    assert response.status_code == 302
    for tenant in selected:
        tenant.refresh_from_db()
        change = tenant.changes.first()
        assert tenant.streaming_enabled is enabled
        assert change is not None and change.actor is not None
        assert (change.changes, change.source, change.actor.username) == (
            {"streaming_enabled": [not enabled, enabled]},
            ChangeSource.ADMIN,
            "root",
        )
    assert Tenant.objects.get(pk=untouched.pk).streaming_enabled is not enabled
    done = "enabled" if enabled else "disabled"
    assert [str(m) for m in get_messages(response.wsgi_request)] == [f"Streaming {done} for 2 tenants."]


def test_setting_the_percentage_in_bulk_asks_for_it_first(
    staff_client: Client, tenant: Tenant, other_tenant: Tenant
) -> None:
    response = _run_action(staff_client, "set_streaming_percentage", [tenant, other_tenant], index="0")

    assert response.status_code == 200
    assert b'name="percentage"' in response.content
    assert Tenant.objects.get(pk=other_tenant.pk).streaming_percentage == other_tenant.streaming_percentage


def test_setting_the_percentage_in_bulk_changes_the_selected_tenants_and_records_it(
    staff_client: Client, tenant: Tenant, other_tenant: Tenant
) -> None:
    response = _run_action(staff_client, "set_streaming_percentage", [tenant, other_tenant], percentage="30", apply="1")

    assert response.status_code == 302
    for selected in (tenant, other_tenant):
        change = selected.changes.first()
        assert Tenant.objects.get(pk=selected.pk).streaming_percentage == 30
        assert change is not None
        assert change.changes == {"streaming_percentage": [selected.streaming_percentage, 30]}
    assert [str(m) for m in get_messages(response.wsgi_request)] == ["Streaming percentage set to 30 for 2 tenants."]


@pytest.mark.parametrize("percentage", ["101", "-1", "half"])
def test_setting_the_percentage_in_bulk_refuses_a_value_outside_0_to_100(
    staff_client: Client, tenant: Tenant, other_tenant: Tenant, percentage: str
) -> None:
    changes = TenantChange.objects.count()

    response = _run_action(
        staff_client, "set_streaming_percentage", [tenant, other_tenant], percentage=percentage, apply="1"
    )

    assert response.status_code == 200
    assert response.context["form"].errors["percentage"]
    assert Tenant.objects.get(pk=tenant.pk).streaming_percentage == tenant.streaming_percentage
    assert Tenant.objects.get(pk=other_tenant.pk).streaming_percentage == other_tenant.streaming_percentage
    assert TenantChange.objects.count() == changes


def test_the_change_page_lists_the_tenants_changes_newest_first(staff_client: Client, tenant: Tenant) -> None:
    actor = User.objects.get(username="root")
    tenant_update(tenant=tenant, actor=actor, source=ChangeSource.ADMIN, streaming_percentage=10)
    tenant_update(tenant=tenant, source=ChangeSource.COMMAND, streaming_percentage=20)

    html = staff_client.get(change_url(tenant)).content.decode()

    newest, older = html.find("streaming_percentage: 10 → 20"), html.find("→ 10</div>")
    assert -1 < newest < older
    assert "Command line" in html and "root" in html


def test_the_change_history_is_listed_view_only_and_filterable_by_source(
    staff_client: Client, tenant: Tenant, other_tenant: Tenant
) -> None:
    tenant_update(tenant=tenant, source=ChangeSource.COMMAND, streaming_percentage=20)
    change = tenant.changes.first()
    assert change is not None

    listed = staff_client.get("/admin/tenants/tenantchange/", {"source": ChangeSource.COMMAND})
    page = staff_client.get(f"/admin/tenants/tenantchange/{change.pk}/change/")

    assert [c.pk for c in listed.context["cl"].result_list] == [change.pk]
    assert page.status_code == 200 and page.context["has_change_permission"] is False
    assert staff_client.get("/admin/tenants/tenantchange/add/").status_code == 403
    assert staff_client.post(f"/admin/tenants/tenantchange/{change.pk}/delete/").status_code == 403


def test_the_change_page_counts_the_last_weeks_fallbacks_by_reason(
    staff_client: Client, tenant: Tenant, other_tenant: Tenant
) -> None:
    def report(of: Tenant, reason: FallbackReason, days_ago: int = 0) -> None:
        session = ChatSession.objects.create(tenant=of)
        made = FallbackReport.objects.create(
            tenant=of, session=session, reason=reason, code="STREAM_00x", from_delivery="stream", to_delivery="poll"
        )
        FallbackReport.objects.filter(pk=made.pk).update(created_at=timezone.now() - timedelta(days=days_ago))

    report(tenant, FallbackReason.TIMEOUT)
    report(tenant, FallbackReason.TIMEOUT, days_ago=6)
    report(tenant, FallbackReason.CONNECTION_FAILED)
    report(tenant, FallbackReason.UNSUPPORTED, days_ago=8)
    report(other_tenant, FallbackReason.NOT_AUTHORIZED)

    html = staff_client.get(change_url(tenant)).content.decode()

    assert "The stream went quiet for too long (STREAM_004): 2" in html
    assert "The stream could not connect or kept dropping (STREAM_001): 1" in html
    assert "STREAM_005" not in html and "STREAM_002" not in html


def _preview_session(tenant: Tenant, bucket: int, visitor_id: str = "", days_ago: int = 0) -> None:
    session = ChatSession.objects.create(tenant=tenant, visitor_id=visitor_id, rollout_bucket=bucket)
    ChatSession.objects.filter(pk=session.pk).update(created_at=timezone.now() - timedelta(days=days_ago))


def test_the_rollout_preview_counts_who_would_stream_at_each_percentage(
    staff_client: Client, tenant: Tenant, other_tenant: Tenant
) -> None:
    _preview_session(tenant, 5, "v1")
    _preview_session(tenant, 20, "v2")
    _preview_session(tenant, 20, "v2", days_ago=3)
    _preview_session(tenant, 60, "v3")
    _preview_session(tenant, 90)  # no visitor id: counted as a visitor of its own
    _preview_session(tenant, 1, "v4", days_ago=8)  # too old
    _preview_session(other_tenant, 1, "v5")

    response = staff_client.get(preview_url(tenant), {"percentage": "30"})

    assert response.status_code == 200
    rows = {row.percentage: (row.streaming_sessions, row.streaming_visitors) for row in response.context["rows"]}
    assert rows == {0: (0, 0), 10: (1, 1), 25: (3, 2), 30: (3, 2), 50: (3, 2), 75: (4, 3), 100: (5, 4)}
    html = response.content.decode()
    assert "5 sessions from 4 distinct visitors" in html
    assert "<strong>30 %</strong>" in html


@pytest.mark.parametrize("percentage", ["101", "-5", "lots"])
def test_the_rollout_preview_shows_an_error_for_a_percentage_outside_0_to_100(
    staff_client: Client, tenant: Tenant, percentage: str
) -> None:
    response = staff_client.get(preview_url(tenant), {"percentage": percentage})

    assert response.status_code == 200
    assert response.context["form"].errors["percentage"]
    assert [row.percentage for row in response.context["rows"]] == [0, 10, 25, 50, 75, 100]


def test_the_rollout_preview_notes_when_streaming_is_off(
    staff_client: Client, tenant: Tenant, other_tenant: Tenant
) -> None:
    on = staff_client.get(preview_url(tenant)).content.decode()
    off = staff_client.get(preview_url(other_tenant)).content.decode()

    assert "Streaming is off" not in on
    assert "Streaming is off" in off


def test_the_change_page_links_to_the_rollout_preview(staff_client: Client, tenant: Tenant) -> None:
    response = staff_client.get(change_url(tenant))

    assert f'href="{preview_url(tenant)}"'.encode() in response.content


def test_tenant_staff_see_only_their_tenant(tenant_staff: Client, tenant: Tenant, other_tenant: Tenant) -> None:
    tenants = tenant_staff.get(CHANGELIST)
    changes = tenant_staff.get("/admin/tenants/tenantchange/")

    assert [t.pk for t in tenants.context["cl"].result_list] == [tenant.pk]
    assert [c.tenant_id for c in changes.context["cl"].result_list] == [tenant.pk]
    assert b"Globex" not in tenants.content and b"Globex" not in changes.content


@pytest.mark.parametrize("page", ["change/", "history/", "rollout-preview/"])
def test_tenant_staff_get_the_missing_object_answer_for_another_tenants_pages(
    tenant_staff: Client, tenant: Tenant, other_tenant: Tenant, page: str
) -> None:
    assert tenant_staff.get(f"{CHANGELIST}{tenant.pk}/{page}").status_code == 200  # their own

    assert_answers_like_a_missing_object(tenant_staff.get(f"{CHANGELIST}{other_tenant.pk}/{page}"))


def test_tenant_staff_get_the_missing_object_answer_for_another_tenants_change(
    tenant_staff: Client, other_tenant: Tenant
) -> None:
    change = other_tenant.changes.get()

    assert_answers_like_a_missing_object(tenant_staff.get(f"/admin/tenants/tenantchange/{change.pk}/change/"))


def test_tenant_staff_cannot_add_or_delete_tenants(tenant_staff: Client, tenant: Tenant) -> None:
    actions = tenant_staff.get(CHANGELIST).context["action_form"].fields["action"].choices

    assert tenant_staff.get(f"{CHANGELIST}add/").status_code == 403
    assert tenant_staff.post(f"{CHANGELIST}{tenant.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Tenant.objects.filter(pk=tenant.pk).exists()
    assert "delete_selected" not in {name for name, _ in actions}


def test_tenant_staff_cannot_change_activity_slug_or_key(tenant_staff: Client, tenant: Tenant) -> None:
    data = _form_data(tenant_staff, change_url(tenant))
    data.update(slug="taken-over", public_key="chosen-by-hand")  # and no is_active: an unticked box

    response = tenant_staff.post(change_url(tenant), data)

    assert response.status_code == 302
    stored = Tenant.objects.get(pk=tenant.pk)
    assert (stored.is_active, stored.slug, stored.public_key) == (True, tenant.slug, tenant.public_key)


def test_tenant_staff_change_their_percentage_and_the_change_is_recorded(tenant_staff: Client, tenant: Tenant) -> None:
    before = tenant.streaming_percentage
    data = _form_data(tenant_staff, change_url(tenant))
    data["streaming_percentage"] = "35"

    response = tenant_staff.post(change_url(tenant), data)

    assert response.status_code == 302
    assert Tenant.objects.get(pk=tenant.pk).streaming_percentage == 35
    change = tenant.changes.first()
    assert change is not None and change.actor is not None
    assert (change.changes, change.source, change.actor.username) == (
        {"streaming_percentage": [before, 35]},
        ChangeSource.ADMIN,
        "staff-of-acme-shop",
    )


def test_tenant_staff_actions_leave_other_tenants_alone(
    tenant_staff: Client, tenant: Tenant, other_tenant: Tenant
) -> None:
    _run_action(tenant_staff, "enable_streaming", [other_tenant], index="0")

    assert Tenant.objects.get(pk=other_tenant.pk).streaming_enabled is False
    assert other_tenant.changes.count() == 1


def test_the_tenant_filter_offers_tenant_staff_only_their_tenant(
    staff_client: Client, tenant_staff: Client, tenant: Tenant, other_tenant: Tenant
) -> None:
    def offered(client: Client) -> set[str]:
        specs = client.get("/admin/tenants/tenantchange/").context["cl"].filter_specs
        return {str(label) for spec in specs if spec.field_path == "tenant" for _, label in spec.lookup_choices}

    assert offered(staff_client) == {"Acme Shop", "Globex"}
    assert offered(tenant_staff) <= {"Acme Shop"}


def test_a_superuser_who_works_for_a_tenant_still_sees_every_tenant(
    staff_client: Client, tenant: Tenant, other_tenant: Tenant
) -> None:
    TenantMembership.objects.create(user=User.objects.get(username="root"), tenant=tenant)

    response = staff_client.get(CHANGELIST)

    assert {t.pk for t in response.context["cl"].result_list} == {tenant.pk, other_tenant.pk}


def test_superusers_assign_staff_to_tenants(staff_client: Client, tenant: Tenant) -> None:
    user = User.objects.create_user(username="bob", is_staff=True)

    response = staff_client.post("/admin/tenants/tenantmembership/add/", {"user": user.pk, "tenant": tenant.pk})

    assert response.status_code == 302
    assert TenantMembership.objects.get(user=user).tenant == tenant


def test_tenant_staff_cannot_see_or_assign_memberships(tenant_staff: Client, tenant: Tenant) -> None:
    assert tenant_staff.get("/admin/tenants/tenantmembership/").status_code == 403
    assert tenant_staff.get("/admin/tenants/tenantmembership/add/").status_code == 403

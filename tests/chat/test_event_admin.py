"""The event log admin: read-only, and staff who work for a tenant see only that tenant's events."""

from __future__ import annotations

import pytest
from django.test import Client

from chat.models import Event
from tenants.models import Tenant
from tests.conftest import assert_answers_like_a_missing_object, conversation, tenant_staff_client

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/chat/event/"


def logged_event(tenant: Tenant) -> Event:
    return Event.objects.create(message=conversation(tenant), seq=1, type="message.delta", data={"text": "Hi"})


def test_tenant_staff_see_only_their_tenants_events(tenant: Tenant, other_tenant: Tenant) -> None:
    ours, theirs = logged_event(tenant), logged_event(other_tenant)
    client = tenant_staff_client(tenant)

    response = client.get(CHANGELIST)

    assert [event.pk for event in response.context["cl"].result_list] == [ours.pk]
    assert client.get(f"{CHANGELIST}{ours.pk}/change/").status_code == 200
    assert_answers_like_a_missing_object(client.get(f"{CHANGELIST}{theirs.pk}/change/"))


def test_a_superuser_sees_every_tenants_events(staff_client: Client, tenant: Tenant, other_tenant: Tenant) -> None:
    ours, theirs = logged_event(tenant), logged_event(other_tenant)

    response = staff_client.get(CHANGELIST)

    assert {event.pk for event in response.context["cl"].result_list} == {ours.pk, theirs.pk}


def test_events_cannot_be_added_or_changed_by_hand(staff_client: Client, tenant: Tenant) -> None:
    event = logged_event(tenant)

    page = staff_client.get(f"{CHANGELIST}{event.pk}/change/")

    assert staff_client.get(f"{CHANGELIST}add/").status_code == 403
    assert page.status_code == 200 and page.context["has_change_permission"] is False

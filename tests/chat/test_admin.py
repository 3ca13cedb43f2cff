"""The chat admin: sessions show their messages, messages their thought steps, fallback reports as widgets sent
them; all of it read-only history, and staff who work for a tenant see only that tenant's."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db.models import Model
from django.test import Client
from django.utils.html import escape
from rest_framework.test import APIClient

from chat.models import FallbackReason, FallbackReport, Message, Role, ThoughtStep
from tenants.models import Tenant
from tests.conftest import SessionInfo, assert_answers_like_a_missing_object, conversation, tenant_staff_client

pytestmark = pytest.mark.django_db


# Each chat model's admin path, and its object in a conversation (given the reply).
CHAT_OBJECTS: dict[str, Callable[[Message], Model]] = {
    "chat/chatsession": lambda reply: reply.session,
    "chat/message": lambda reply: reply,
    "chat/thoughtstep": lambda reply: reply.steps.get(),
    "chat/fallbackreport": lambda reply: FallbackReport.objects.get(message=reply),
}


@pytest.fixture
def answered(api: APIClient, session: SessionInfo) -> Message:
    """The assistant's reply to a batch message sent through the API, as the widget sends it."""
    response = api.post(session.messages_url, {"content": "What is Brook?"}, format="json", **session.auth)
    assert response.status_code == 200, response.content
    return Message.objects.get(session_id=session.id, role=Role.ASSISTANT)


def test_the_session_changelist_lists_the_session(staff_client: Client, answered: Message) -> None:
    response = staff_client.get("/admin/chat/chatsession/")

    assert response.status_code == 200
    assert str(answered.session_id) in response.content.decode()


def test_the_session_page_shows_its_messages_inline(staff_client: Client, answered: Message) -> None:
    response = staff_client.get(f"/admin/chat/chatsession/{answered.session_id}/change/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "What is Brook?" in html
    assert escape(answered.content.splitlines()[0]) in html
    assert f"/admin/chat/message/{answered.id}/change/" in html  # each inline row links to its message


def test_the_message_changelist_lists_both_sides_of_the_exchange(staff_client: Client, answered: Message) -> None:
    response = staff_client.get("/admin/chat/message/")

    assert response.status_code == 200
    html = response.content.decode()
    assert str(answered.id) in html and str(answered.reply_to_id) in html


def test_the_message_page_shows_its_thought_steps(staff_client: Client, answered: Message) -> None:
    response = staff_client.get(f"/admin/chat/message/{answered.id}/change/")

    assert response.status_code == 200
    html = response.content.decode()
    titles = list(ThoughtStep.objects.filter(message=answered).order_by("index").values_list("title", flat=True))
    assert "Analyzing the prompt" in titles
    assert all(title in html for title in titles)


def test_the_thought_step_pages_render(staff_client: Client, answered: Message) -> None:
    step = ThoughtStep.objects.filter(message=answered).earliest("index")

    listing = staff_client.get("/admin/chat/thoughtstep/")
    page = staff_client.get(f"/admin/chat/thoughtstep/{step.pk}/change/")

    assert listing.status_code == 200 and b"Analyzing the prompt" in listing.content
    assert page.status_code == 200 and b"Analyzing the prompt" in page.content


def test_messages_cannot_be_added_by_hand_in_the_session_page(staff_client: Client, answered: Message) -> None:
    response = staff_client.get(f"/admin/chat/chatsession/{answered.session_id}/change/")

    formset = response.context["inline_admin_formsets"][0].formset
    assert formset.total_form_count() == formset.initial_form_count() == 2


@pytest.mark.parametrize("path", ["/admin/chat/chatsession/", "/admin/chat/message/", "/admin/chat/thoughtstep/"])
def test_anonymous_visitors_are_sent_to_the_login(client: Client, path: str) -> None:
    response = client.get(path)

    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


@pytest.mark.parametrize(("model", "obj"), CHAT_OBJECTS.items())
def test_tenant_staff_see_only_their_tenants_chat_records(
    tenant: Tenant, other_tenant: Tenant, model: str, obj: Callable[[Message], Model]
) -> None:
    ours, theirs = obj(conversation(tenant)), obj(conversation(other_tenant))

    response = tenant_staff_client(tenant).get(f"/admin/{model}/")

    listed = {o.pk for o in response.context["cl"].result_list}
    assert ours.pk in listed and theirs.pk not in listed
    assert b"Globex" not in response.content  # nor in the tenant filter


@pytest.mark.parametrize(("model", "obj"), CHAT_OBJECTS.items())
def test_tenant_staff_get_the_missing_object_answer_for_another_tenants_chat_records(
    tenant: Tenant, other_tenant: Tenant, model: str, obj: Callable[[Message], Model]
) -> None:
    ours, theirs = obj(conversation(tenant)), obj(conversation(other_tenant))
    client = tenant_staff_client(tenant)

    assert client.get(f"/admin/{model}/{ours.pk}/change/").status_code == 200
    assert_answers_like_a_missing_object(client.get(f"/admin/{model}/{theirs.pk}/change/"))


@pytest.mark.parametrize(("model", "obj"), CHAT_OBJECTS.items())
def test_a_superuser_sees_every_tenants_chat_records(
    staff_client: Client, tenant: Tenant, other_tenant: Tenant, model: str, obj: Callable[[Message], Model]
) -> None:
    ours, theirs = obj(conversation(tenant)), obj(conversation(other_tenant))

    response = staff_client.get(f"/admin/{model}/")

    assert {ours.pk, theirs.pk} <= {o.pk for o in response.context["cl"].result_list}
    assert staff_client.get(f"/admin/{model}/{theirs.pk}/change/").status_code == 200


@pytest.mark.parametrize("model", CHAT_OBJECTS)
def test_chat_records_cannot_be_added_by_hand(staff_client: Client, model: str) -> None:
    assert staff_client.get(f"/admin/{model}/add/").status_code == 403


def test_the_fallback_reports_are_listed_with_their_reason_and_transports(
    staff_client: Client, tenant: Tenant, other_tenant: Tenant
) -> None:
    reply = conversation(tenant)
    conversation(other_tenant)

    response = staff_client.get("/admin/chat/fallbackreport/", {"reason": FallbackReason.TIMEOUT})

    html = response.content.decode()
    assert str(reply.session) in html and "STREAM_004" in html
    assert "The stream went quiet for too long (STREAM_004)" in html
    assert {spec.title for spec in response.context["cl"].filter_specs} >= {"reason", "code", "tenant"}


def test_a_fallback_report_cannot_be_changed_or_deleted(staff_client: Client, tenant: Tenant) -> None:
    report = FallbackReport.objects.get(message=conversation(tenant))

    page = staff_client.get(f"/admin/chat/fallbackreport/{report.pk}/change/")

    assert page.status_code == 200 and page.context["has_change_permission"] is False
    assert staff_client.post(f"/admin/chat/fallbackreport/{report.pk}/delete/", {"post": "yes"}).status_code == 403
    assert FallbackReport.objects.filter(pk=report.pk).exists()

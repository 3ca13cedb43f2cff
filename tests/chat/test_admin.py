"""The chat admin: sessions show their messages, messages their thought steps; all of it read-only history."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils.html import escape
from rest_framework.test import APIClient

from chat.models import Message, Role, ThoughtStep
from tests.conftest import SessionInfo

pytestmark = pytest.mark.django_db


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

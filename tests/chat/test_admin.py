"""The chat admin: sessions show their messages, messages their steps with timings."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from chat.models import Message, Role, ThoughtStep
from tests.conftest import SessionInfo

pytestmark = pytest.mark.django_db


@pytest.fixture
def answered(api: APIClient, session: SessionInfo) -> Message:
    api.post(session.messages_url, {"content": "What is Brook?"}, format="json", **session.auth)
    return Message.objects.get(session_id=session.id, role=Role.ASSISTANT)


def test_session_pages_show_the_messages(staff_client: Client, answered: Message) -> None:
    listing = staff_client.get("/admin/chat/chatsession/")
    page = staff_client.get(f"/admin/chat/chatsession/{answered.session_id}/change/")

    assert listing.status_code == 200
    assert page.status_code == 200 and b"What is Brook?" in page.content


def test_message_pages_show_the_thought_steps(staff_client: Client, answered: Message) -> None:
    listing = staff_client.get("/admin/chat/message/")
    page = staff_client.get(f"/admin/chat/message/{answered.id}/change/")

    assert listing.status_code == 200
    assert page.status_code == 200 and b"Analyzing the prompt" in page.content


def test_thought_step_pages_render(staff_client: Client, answered: Message) -> None:
    step = ThoughtStep.objects.filter(message=answered).earliest("index")

    assert staff_client.get("/admin/chat/thoughtstep/").status_code == 200
    assert staff_client.get(f"/admin/chat/thoughtstep/{step.pk}/change/").status_code == 200

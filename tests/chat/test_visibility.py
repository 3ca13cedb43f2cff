"""Thought-step visibility: what a tenant hides is neither stored for the widget nor sent, on any route."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient
from rest_framework.test import APIClient

from chat.models import Event, Message, Role, ThoughtStep
from tenants.models import Tenant
from tenants.services import tenant_update
from tests.conftest import SessionInfo
from tests.streaming.conftest import parse_sse, poll_to_end, read_body

STEP_EVENTS = {"step.started", "step.completed", "tool.call", "tool.result"}


def ask(api: APIClient, session: SessionInfo) -> dict[str, Any]:
    response = api.post(session.messages_url, {"content": "What is Brook?"}, format="json", **session.auth)
    assert response.status_code == 200, response.content
    body: dict[str, Any] = response.json()
    return body


def stored_types(reply_id: str) -> set[str]:
    return set(Event.objects.filter(message_id=reply_id).values_list("type", flat=True))


@pytest.mark.django_db
def test_full_shows_reasoning_steps_and_tools(api: APIClient, tenant: Tenant, session: SessionInfo) -> None:
    reply = ask(api, session)

    assert reply["reasoning"] and reply["steps"]
    assert {"reasoning.delta", *STEP_EVENTS} <= stored_types(reply["id"])


@pytest.mark.django_db
def test_steps_keeps_steps_and_tool_calls_but_never_stores_raw_reasoning(
    api: APIClient, tenant: Tenant, session: SessionInfo
) -> None:
    tenant_update(tenant=tenant, thought_visibility="steps")

    reply = ask(api, session)

    assert reply["reasoning"] == "" and reply["steps"]
    types = stored_types(reply["id"])
    assert "reasoning.delta" not in types and types >= STEP_EVENTS
    stored = Message.objects.get(id=reply["id"])
    assert stored.reasoning == ""
    assert Event.objects.get(message_id=reply["id"], type="message.completed").data["reasoning"] == ""
    assert stored.content  # the answer itself is whole


@pytest.mark.django_db
def test_hidden_stores_and_sends_only_the_answer(api: APIClient, tenant: Tenant, session: SessionInfo) -> None:
    tenant_update(tenant=tenant, thought_visibility="hidden")

    reply = ask(api, session)

    assert reply["reasoning"] == "" and reply["steps"] == [] and reply["content"]
    assert stored_types(reply["id"]) == {"message.started", "status", "text.delta", "message.completed"}
    assert not ThoughtStep.objects.filter(message_id=reply["id"]).exists()


@pytest.mark.django_db(transaction=True)
async def test_tightening_the_setting_hides_replies_written_before_on_every_route(
    tenant: Tenant, session: SessionInfo
) -> None:
    client = AsyncClient()
    auth = {"Authorization": f"Bearer {session.token}"}
    response = await client.post(
        session.messages_url, {"content": "What is Brook?"}, content_type="application/json", headers=auth
    )
    reply_id = response.json()["id"]
    assert "reasoning.delta" in await sync_to_async(stored_types)(reply_id)
    await sync_to_async(tenant_update)(tenant=tenant, thought_visibility="hidden")

    history = (await client.get(session.url, headers=auth)).json()
    polled = await poll_to_end(client, reply_id, session.token)
    streamed = parse_sse(
        await read_body(await client.get(f"/api/v1/messages/{reply_id}/stream", {"token": session.stream_token}))
    )

    answer = next(m for m in history["messages"] if m["role"] == Role.ASSISTANT)
    assert answer["reasoning"] == "" and answer["steps"] == [] and answer["content"]
    for types in ({e["type"] for e in polled}, {e.event for e in streamed}):
        assert types == {"message.started", "status", "text.delta", "message.completed"}
    assert polled[-1]["data"]["reasoning"] == "" and streamed[-1].data["reasoning"] == ""

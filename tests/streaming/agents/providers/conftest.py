"""Shared by the provider tests: the fake upstream, asking in batch mode, and the stop check."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient
from rest_framework.test import APIClient

from chat.models import Event
from tests.conftest import SessionInfo, eventually
from tests.streaming.agents.providers.fake_upstream import FakeUpstream
from tests.streaming.conftest import poll_to_end


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    fake = FakeUpstream().start()
    yield fake
    fake.stop()


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("streaming.agents.llm.BACKOFF_SECONDS", 0.01)


def ask(api: APIClient, session: SessionInfo, content: str = "What is 6 times 7?") -> dict[str, Any]:
    response = api.post(session.messages_url, {"content": content}, format="json", **session.auth)
    assert response.status_code == 200, response.content
    body: dict[str, Any] = response.json()
    return body


async def stop_mid_answer(session: SessionInfo, upstream: FakeUpstream) -> list[dict[str, Any]]:
    """Start a slow reply, cancel it after its first token; the events it ended with."""
    client = AsyncClient()
    auth = {"Authorization": f"Bearer {session.token}"}
    started = await client.post(
        session.messages_url, {"content": "Count slowly", "mode": "poll"}, content_type="application/json", headers=auth
    )
    reply_id = started.json()["id"]
    await eventually(
        sync_to_async(Event.objects.filter(message_id=reply_id, type="text.delta").exists), "the reply's first token"
    )
    await client.post(f"/api/v1/messages/{reply_id}/cancel", headers=auth)
    events = await poll_to_end(client, reply_id, session.token)
    assert events[-1]["type"] == "message.cancelled"
    assert await asyncio.to_thread(upstream.disconnected.wait, 5), "the upstream never saw the connection close"
    return events

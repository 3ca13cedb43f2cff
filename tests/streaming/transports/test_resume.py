"""Resuming from any cut point gives exactly the rest of the stored log, over polling, SSE and WebSocket."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.test import AsyncClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework.test import APIClient

from config.asgi import router
from tests.conftest import SessionInfo
from tests.streaming.conftest import parse_sse, poll_to_end, read_body, stored_log

pytestmark = [pytest.mark.django_db(transaction=True)]

QUICK = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture
def finished(api: APIClient, session: SessionInfo) -> tuple[str, list[int]]:
    reply = api.post(session.messages_url, {"content": "Resume me, please?"}, format="json", **session.auth).json()
    return reply["id"], [seq for seq, _, _ in stored_log(reply["id"])]


@QUICK
@given(data=st.data())
def test_polling_from_any_cut(session: SessionInfo, finished: tuple[str, list[int]], data: Any) -> None:
    reply_id, seqs = finished
    cut = data.draw(st.integers(0, len(seqs)))

    events = async_to_sync(poll_to_end)(AsyncClient(), reply_id, session.token, after=cut)

    assert [e["seq"] for e in events] == seqs[cut:]


@QUICK
@given(data=st.data())
def test_sse_from_any_cut(session: SessionInfo, finished: tuple[str, list[int]], data: Any) -> None:
    reply_id, seqs = finished
    cut = data.draw(st.integers(0, len(seqs) - 1))

    async def resume() -> list[int]:
        response = await AsyncClient().get(
            f"/api/v1/messages/{reply_id}/stream", {"token": session.stream_token}, headers={"Last-Event-ID": str(cut)}
        )
        return [event.id for event in parse_sse(await read_body(response))]

    assert async_to_sync(resume)() == seqs[cut:]


@QUICK
@given(data=st.data())
def test_websocket_from_any_cut(session: SessionInfo, finished: tuple[str, list[int]], data: Any) -> None:
    reply_id, seqs = finished
    cut = data.draw(st.integers(0, len(seqs) - 1))

    async def resume() -> list[int]:
        socket = WebsocketCommunicator(router, f"/ws/v1/sessions/{session.id}/?token={session.stream_token}")
        await socket.connect()
        await socket.send_json_to({"type": "resume", "message_id": reply_id, "after": cut})
        got: list[int] = []
        while not got or got[-1] != seqs[-1]:
            got.append((await socket.receive_json_from(timeout=5))["seq"])
        await socket.disconnect()
        return got

    assert async_to_sync(resume)() == seqs[cut:]

"""The WebSocket consumer: messages, cancel and resume over one socket, every event exactly once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from pytest_django import Settings

from chat.models import Event
from config.asgi import router
from core.limits import open_streams, session_pool
from tenants.models import Tenant
from tests.conftest import SessionInfo
from tests.streaming.conftest import assert_whole_log, stored_log

pytestmark = [pytest.mark.django_db(transaction=True)]


async def connect(session: SessionInfo, token: str | None = None) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(router, f"/ws/v1/sessions/{session.id}/?token={token or session.stream_token}")
    connected, _ = await communicator.connect()
    assert connected
    return communicator


async def events_until_terminal(communicator: WebsocketCommunicator, message_id: str) -> list[dict[str, Any]]:
    frames = []
    while True:
        frame = await communicator.receive_json_from(timeout=10)
        if frame["type"] != "event" or frame["message_id"] != message_id:
            continue
        frames.append(frame)
        if frame["event"] in {"message.completed", "message.cancelled", "message.failed"}:
            return frames


async def test_a_message_sent_over_the_socket_streams_its_whole_log(session: SessionInfo) -> None:
    socket = await connect(session)

    await socket.send_json_to({"type": "message", "content": "What can you do?", "client_message_id": "w-1"})
    accepted = await socket.receive_json_from(timeout=5)
    frames = await events_until_terminal(socket, accepted["message_id"])

    assert accepted["type"] == "message.accepted" and accepted["client_message_id"] == "w-1"
    assert_whole_log([f["seq"] for f in frames], [f["event"] for f in frames])
    stored = await sync_to_async(stored_log)(accepted["message_id"])
    assert [(f["seq"], f["event"]) for f in frames] == [(seq, kind) for seq, kind, _ in stored]
    await socket.disconnect()


async def test_resume_sends_the_stored_events_after_the_cursor(session: SessionInfo) -> None:
    socket = await connect(session)
    await socket.send_json_to({"type": "message", "content": "hello"})
    message_id = (await socket.receive_json_from(timeout=5))["message_id"]
    full = await events_until_terminal(socket, message_id)
    await socket.disconnect()

    again = await connect(session)
    await again.send_json_to({"type": "resume", "message_id": message_id, "after": 4})
    resumed = await events_until_terminal(again, message_id)

    assert [f["seq"] for f in resumed] == [f["seq"] for f in full][4:]
    await again.disconnect()


@pytest.mark.slow  # about 2 s or more: make test-fast leaves it out
async def test_cancel_over_the_socket(session: SessionInfo, settings: Settings) -> None:
    settings.BROOK_DEMO_TOKENS_PER_SECOND = 20
    socket = await connect(session)
    await socket.send_json_to({"type": "message", "content": "a long story please"})
    message_id = (await socket.receive_json_from(timeout=5))["message_id"]
    while True:
        frame = await socket.receive_json_from(timeout=10)
        if frame.get("event") == "text.delta":
            break

    await socket.send_json_to({"type": "cancel", "message_id": message_id})
    frames = await events_until_terminal(socket, message_id)

    assert frames[-1]["event"] == "message.cancelled"
    await socket.disconnect()


async def test_a_socket_gets_events_of_replies_started_elsewhere(session: SessionInfo) -> None:
    from django.test import AsyncClient

    socket = await connect(session)
    response = await AsyncClient().post(
        session.messages_url,
        {"content": "from another tab", "mode": "poll"},
        content_type="application/json",
        headers={"Authorization": f"Bearer {session.token}"},
    )
    frames = await events_until_terminal(socket, response.json()["id"])

    assert_whole_log([f["seq"] for f in frames], [f["event"] for f in frames])
    await socket.disconnect()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ({"type": "dance"}, "INVALID_INPUT"),
        ({"type": "message"}, "INVALID_INPUT"),
        ({"type": "message", "content": "x" * 9000}, "MESSAGE_TOO_LONG"),
        ({"type": "resume", "message_id": "nope"}, "MESSAGE_NOT_FOUND"),
        ({"type": "cancel", "message_id": "00000000-0000-0000-0000-000000000000"}, "MESSAGE_NOT_FOUND"),
    ],
)
async def test_bad_frames_get_an_error_frame_and_the_socket_stays_open(
    session: SessionInfo, frame: dict[str, Any], code: str
) -> None:
    socket = await connect(session)

    await socket.send_json_to(frame)
    error = await socket.receive_json_from(timeout=5)
    await socket.send_to(text_data="{not json")
    invalid = await socket.receive_json_from(timeout=5)

    assert (error["type"], error["code"]) == ("error", code)
    assert invalid["code"] == "INVALID_JSON"
    await socket.disconnect()


async def test_resume_past_the_end_is_stream_003(session: SessionInfo) -> None:
    socket = await connect(session)
    await socket.send_json_to({"type": "message", "content": "hello"})
    message_id = (await socket.receive_json_from(timeout=5))["message_id"]
    await events_until_terminal(socket, message_id)

    await socket.send_json_to({"type": "resume", "message_id": message_id, "after": 10_000})

    assert (await socket.receive_json_from(timeout=5))["code"] == "STREAM_003"
    await socket.disconnect()


async def test_outsiders_and_bad_tokens_are_turned_away(
    session: SessionInfo, other_tenant: Tenant, make_session: Callable[..., SessionInfo]
) -> None:
    outsider = await sync_to_async(make_session)(other_tenant)

    foreign = await connect(session, token=outsider.stream_token)
    foreign_error = await foreign.receive_json_from(timeout=5)
    foreign_close = await foreign.receive_output(timeout=5)
    forged = await connect(session, token="garbage")
    forged_error = await forged.receive_json_from(timeout=5)
    forged_close = await forged.receive_output(timeout=5)

    assert (foreign_error["code"], foreign_close["code"]) == ("SESSION_NOT_FOUND", 4404)
    assert (forged_error["code"], forged_close["code"]) == ("AUTH_INVALID", 4401)
    assert not await sync_to_async(Event.objects.exists)()


@pytest.mark.parametrize(
    ("send", "kind"),
    [({"type": "websocket.receive", "bytes": b"\x01"}, "binary"), ({"type": "websocket.receive", "text": ""}, "empty")],
)
async def test_a_binary_or_empty_frame_gets_an_error_frame_and_the_socket_stays_open(
    session: SessionInfo, send: dict[str, Any], kind: str
) -> None:
    socket = await connect(session)

    await socket.send_input(send)
    error = await socket.receive_json_from(timeout=5)
    await socket.send_json_to({"type": "message", "content": "still there?"})
    accepted = await socket.receive_json_from(timeout=5)

    assert (error["type"], error["code"]) == ("error", "INVALID_JSON")
    assert kind in error["message"]
    assert accepted["type"] == "message.accepted"
    await socket.disconnect()


async def test_a_socket_that_fails_gives_its_stream_slot_back(
    session: SessionInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(self: Any, content: Any, **kwargs: Any) -> None:
        raise RuntimeError("a handler bug")

    monkeypatch.setattr("streaming.transports.websocket.SessionConsumer.receive_json", broken)
    socket = await connect(session)
    assert await sync_to_async(open_streams)(session_pool(session.id)) == 1

    await socket.send_json_to({"type": "message", "content": "hello"})
    with pytest.raises(RuntimeError):
        await socket.wait(timeout=5)

    assert await sync_to_async(open_streams)(session_pool(session.id)) == 0

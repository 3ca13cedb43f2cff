"""Polling, SSE, fetch streaming and EventSource start: every transport reads the same whole log."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient
from pytest_django import Settings

from chat.models import Event, Message, MessageStatus
from core.limits import open_streams, session_pool
from tenants.models import Tenant
from tests.conftest import SessionInfo, eventually
from tests.streaming.conftest import (
    assert_whole_log,
    parse_sse,
    poll_to_end,
    read_body,
    start_poll,
    stored_log,
    text_of,
)

pytestmark = [pytest.mark.django_db(transaction=True)]

QUESTION = "How do I rotate my API keys safely?"

T = TypeVar("T")


async def test_polling_with_the_cursor_sees_every_event_exactly_once(session: SessionInfo) -> None:
    client = AsyncClient()
    reply_id = await start_poll(client, session)

    events = await poll_to_end(client, reply_id, session.token)

    assert_whole_log([e["seq"] for e in events], [e["type"] for e in events])
    types = [e["type"] for e in events]
    assert types[:2] == ["message.started", "status"]
    assert {"step.started", "step.completed", "tool.call", "tool.result", "reasoning.delta", "text.delta"} <= set(types)
    stored = await sync_to_async(Message.objects.get)(id=reply_id)
    assert stored.status == MessageStatus.COMPLETED
    assert text_of(events) == stored.content
    assert events[-1]["data"]["content"] == stored.content
    assert events[-1]["data"]["usage"]["completion_tokens"] > 0


@pytest.mark.slow  # about 2 s or more: make test-fast leaves it out
async def test_a_poll_shows_progress_and_the_steps_so_far(session: SessionInfo, settings: Settings) -> None:
    settings.BROOK_DEMO_TOKENS_PER_SECOND = 50
    client = AsyncClient()
    reply_id = await start_poll(client, session)
    auth = {"Authorization": f"Bearer {session.token}"}

    async def poll_with_content() -> dict[str, Any] | None:
        body: dict[str, Any] = (await client.get(f"/api/v1/messages/{reply_id}", headers=auth)).json()
        return body if body["content"] else None

    body = await eventually(poll_with_content, "a poll shows some of the answer")

    assert body["status"] == "running"
    assert body["content"] and body["steps"]
    assert body["poll_after_ms"] is not None
    events = await poll_to_end(client, reply_id, session.token)
    assert events[-1]["type"] == "message.completed"


async def test_a_long_poll_returns_when_the_first_event_arrives(session: SessionInfo, settings: Settings) -> None:
    settings.BROOK_DEMO_STEP_SECONDS = 0.3
    client = AsyncClient()
    reply_id = await start_poll(client, session)
    auth = {"Authorization": f"Bearer {session.token}"}
    last = (await client.get(f"/api/v1/messages/{reply_id}", headers=auth)).json()["next"]

    started = asyncio.get_running_loop().time()
    body = (await client.get(f"/api/v1/messages/{reply_id}", {"after": last, "wait": 10}, headers=auth)).json()

    assert body["events"] and body["events"][0]["seq"] == last + 1
    assert asyncio.get_running_loop().time() - started < 5
    await poll_to_end(client, reply_id, session.token, after=body["next"])


async def test_sse_streams_the_whole_log_and_ends(session: SessionInfo) -> None:
    client = AsyncClient()
    reply_id = await start_poll(client, session)

    response = await client.get(f"/api/v1/messages/{reply_id}/stream", {"token": session.stream_token})

    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    assert response["Cache-Control"] == "no-cache"
    assert response["X-Accel-Buffering"] == "no"
    raw = await read_body(response)
    assert raw.startswith(b": connected")
    events = parse_sse(raw)
    assert_whole_log([e.id for e in events], [e.event for e in events])
    stored = await sync_to_async(stored_log)(reply_id)
    assert [(e.id, e.event) for e in events] == [(seq, kind) for seq, kind, _ in stored]


async def test_sse_streams_while_the_cache_is_away_with_cancel_on_disconnect(
    session: SessionInfo, tenant: Tenant, cache_away: None
) -> None:
    """A Redis outage: the viewer count that ``cancel_on_disconnect`` keeps cannot be kept; the stream is served
    uncounted instead of failing."""
    await Tenant.objects.filter(pk=tenant.pk).aupdate(cancel_on_disconnect=True)
    client = AsyncClient()
    reply_id = await start_poll(client, session)

    response = await client.get(f"/api/v1/messages/{reply_id}/stream", {"token": session.stream_token})
    raw = await read_body(response)

    assert response.status_code == 200
    events = parse_sse(raw)
    assert_whole_log([e.id for e in events], [e.event for e in events])
    assert events[-1].event == "message.completed"


async def test_sse_resumes_after_last_event_id_from_header_or_query(session: SessionInfo) -> None:
    client = AsyncClient()
    reply_id = await start_poll(client, session)
    await poll_to_end(client, reply_id, session.token)
    stored = await sync_to_async(stored_log)(reply_id)

    by_header = await client.get(
        f"/api/v1/messages/{reply_id}/stream", {"token": session.stream_token}, headers={"Last-Event-ID": "3"}
    )
    by_query = await client.get(
        f"/api/v1/messages/{reply_id}/stream", {"token": session.stream_token, "last_event_id": "5"}
    )

    assert [e.id for e in parse_sse(await read_body(by_header))] == [seq for seq, _, _ in stored][3:]
    assert [e.id for e in parse_sse(await read_body(by_query))] == [seq for seq, _, _ in stored][5:]


async def test_sse_after_the_terminal_event_is_204_so_eventsource_stops(session: SessionInfo) -> None:
    client = AsyncClient()
    reply_id = await start_poll(client, session)
    events = await poll_to_end(client, reply_id, session.token)

    response = await client.get(
        f"/api/v1/messages/{reply_id}/stream",
        {"token": session.stream_token},
        headers={"Last-Event-ID": str(events[-1]["seq"])},
    )

    assert response.status_code == 204


async def test_fetch_streaming_answers_with_the_event_stream(session: SessionInfo) -> None:
    client = AsyncClient()

    response = await client.post(
        session.messages_url,
        {"content": QUESTION, "mode": "stream", "client_message_id": "f-1"},
        content_type="application/json",
        headers={"Authorization": f"Bearer {session.token}"},
    )

    assert response.status_code == 200
    assert response["Content-Type"] == "text/event-stream"
    events = parse_sse(await read_body(response))
    assert_whole_log([e.id for e in events], [e.event for e in events])
    assert events[0].event == "message.started"


async def test_eventsource_start_streams_and_a_reconnect_resumes_the_same_run(
    session: SessionInfo, tenant: Tenant
) -> None:
    client = AsyncClient()
    params = {
        "tenant": tenant.public_key,
        "session_id": str(session.id),
        "token": session.stream_token,
        "message_id": "es-1",
        "user_input": QUESTION,
    }

    first = await client.get("/api/v1/stream", params)
    first_events = parse_sse(await read_body(first))
    again = await client.get("/api/v1/stream", params, headers={"Last-Event-ID": "4"})
    resumed = parse_sse(await read_body(again))

    assert first.status_code == 200 and again.status_code == 200
    assert_whole_log([e.id for e in first_events], [e.event for e in first_events])
    assert [e.id for e in resumed] == [e.id for e in first_events][4:]
    assert await sync_to_async(Message.objects.filter(session_id=session.id).count)() == 2  # one question, one reply


async def test_a_reconnect_after_the_end_answers_204_and_holds_no_stream_slot(
    session: SessionInfo, tenant: Tenant
) -> None:
    client = AsyncClient()
    params = {
        "tenant": tenant.public_key,
        "session_id": str(session.id),
        "token": session.stream_token,
        "message_id": "es-done",
        "user_input": QUESTION,
    }
    first = parse_sse(await read_body(await client.get("/api/v1/stream", params)))

    reconnects = [
        await client.get("/api/v1/stream", params, headers={"Last-Event-ID": str(first[-1].id)}) for _ in range(4)
    ]

    assert [response.status_code for response in reconnects] == [204] * 4  # more than max_streams_per_session (3)
    assert await sync_to_async(open_streams)(session_pool(session.id)) == 0


@pytest.mark.parametrize(
    "drop",
    ["tenant", "session_id", "message_id", "user_input"],
)
async def test_eventsource_start_names_a_missing_parameter(session: SessionInfo, tenant: Tenant, drop: str) -> None:
    params = {
        "tenant": tenant.public_key,
        "session_id": str(session.id),
        "token": session.stream_token,
        "message_id": "m",
        "user_input": "hi",
    }
    del params[drop]

    response = await AsyncClient().get("/api/v1/stream", params)

    assert response.status_code == 400
    assert response.json()["code"] == "STREAM_003"
    assert drop in response.json()["message"]


async def test_eventsource_start_for_another_tenants_key_is_404(session: SessionInfo, other_tenant: Tenant) -> None:
    params = {
        "tenant": other_tenant.public_key,
        "session_id": str(session.id),
        "token": session.stream_token,
        "message_id": "m",
        "user_input": "hi",
    }

    response = await AsyncClient().get("/api/v1/stream", params)

    assert response.status_code == 404


async def test_streaming_routes_refuse_a_tenant_without_streaming(session: SessionInfo, tenant: Tenant) -> None:
    await sync_to_async(Tenant.objects.filter(pk=tenant.pk).update)(streaming_enabled=False)
    client = AsyncClient()
    auth = {"Authorization": f"Bearer {session.token}"}

    post = await client.post(
        session.messages_url, {"content": "hi", "mode": "stream"}, content_type="application/json", headers=auth
    )
    reply_id = await start_poll(client, session)
    sse = await client.get(f"/api/v1/messages/{reply_id}/stream", headers=auth)

    assert (post.status_code, post.json()["code"]) == (403, "STREAM_002")
    assert (sse.status_code, sse.json()["code"]) == (403, "STREAM_002")
    await poll_to_end(client, reply_id, session.token)  # polling still works


@pytest.mark.parametrize(
    ("query", "status"),
    [({"after": "-1"}, 400), ({"after": "abc"}, 400), ({"after": "99999"}, 400), ({"wait": "60"}, 400)],
)
async def test_bad_poll_cursors_are_400_stream_003(session: SessionInfo, query: dict[str, str], status: int) -> None:
    client = AsyncClient()
    reply_id = await start_poll(client, session)
    await poll_to_end(client, reply_id, session.token)

    response = await client.get(
        f"/api/v1/messages/{reply_id}", query, headers={"Authorization": f"Bearer {session.token}"}
    )

    assert response.status_code == status
    assert response.json()["code"] == "STREAM_003"


async def test_a_bad_last_event_id_is_400(session: SessionInfo) -> None:
    client = AsyncClient()
    reply_id = await start_poll(client, session)

    response = await client.get(
        f"/api/v1/messages/{reply_id}/stream", {"token": session.stream_token}, headers={"Last-Event-ID": "x1"}
    )

    assert response.status_code == 400
    assert response.json()["code"] == "STREAM_003"
    await poll_to_end(client, reply_id, session.token)


@pytest.mark.parametrize("route", ["", "/stream"])
async def test_message_routes_give_outsiders_404_and_strangers_401(
    session: SessionInfo,
    other_tenant: Tenant,
    tenant: Tenant,
    make_session: Callable[..., SessionInfo],
    route: str,
) -> None:
    client = AsyncClient()
    reply_id = await start_poll(client, session)
    outsider = await sync_to_async(make_session)(other_tenant)
    neighbour = await sync_to_async(make_session)(tenant)
    url = f"/api/v1/messages/{reply_id}{route}"

    foreign = await client.get(url, headers={"Authorization": f"Bearer {outsider.token}"})
    same_tenant = await client.get(url, headers={"Authorization": f"Bearer {neighbour.token}"})
    anonymous = await client.get(url)
    forged = await client.get(url, {"token": session.stream_token + "x"})
    bad_id = await client.get(
        f"/api/v1/messages/not-a-uuid{route}", headers={"Authorization": f"Bearer {session.token}"}
    )

    assert (foreign.status_code, foreign.json()["code"]) == (404, "MESSAGE_NOT_FOUND")
    assert same_tenant.status_code == 404
    assert (anonymous.status_code, anonymous.json()["code"]) == (401, "AUTH_REQUIRED")
    assert (forged.status_code, forged.json()["code"]) == (401, "AUTH_INVALID")
    assert bad_id.status_code == 404
    await poll_to_end(client, reply_id, session.token)


async def test_a_compacted_log_is_410_for_streams_and_expired_for_polls(session: SessionInfo) -> None:
    from django.utils import timezone

    client = AsyncClient()
    reply_id = await start_poll(client, session)
    await poll_to_end(client, reply_id, session.token)
    await sync_to_async(Event.objects.filter(message_id=reply_id).delete)()
    await sync_to_async(Message.objects.filter(id=reply_id).update)(log_compacted_at=timezone.now())
    auth = {"Authorization": f"Bearer {session.token}"}

    sse = await client.get(f"/api/v1/messages/{reply_id}/stream", headers=auth)
    poll = await client.get(f"/api/v1/messages/{reply_id}", headers=auth)

    assert (sse.status_code, sse.json()["code"]) == (410, "LOG_EXPIRED")
    assert poll.status_code == 200
    assert poll.json()["log_expired"] is True and poll.json()["done"] is True
    assert poll.json()["content"]


async def test_the_history_shows_a_running_reply_so_far(session: SessionInfo, settings: Settings) -> None:
    settings.BROOK_DEMO_TOKENS_PER_SECOND = 30
    client = AsyncClient()
    reply_id = await start_poll(client, session)
    await eventually(
        sync_to_async(Event.objects.filter(message_id=reply_id, type="text.delta").exists), "the answer's first token"
    )

    history = (await client.get(session.url, headers={"Authorization": f"Bearer {session.token}"})).json()

    reply = history["messages"][-1]
    assert reply["status"] == "running"
    assert reply["content"]
    await client.post(f"/api/v1/messages/{reply_id}/cancel", headers={"Authorization": f"Bearer {session.token}"})
    await poll_to_end(client, reply_id, session.token)


# --- Refused input: a 4xx JSON body, nothing stored --------------------------------------------------------------


def es_params(session: SessionInfo, tenant: Tenant, **extra: str) -> dict[str, str]:
    return {
        "tenant": tenant.public_key,
        "session_id": str(session.id),
        "token": session.stream_token,
        "message_id": "es-refused",
        "user_input": QUESTION,
        **extra,
    }


async def test_a_cursor_takes_ascii_digits_only(session: SessionInfo, tenant: Tenant) -> None:
    client = AsyncClient()
    reply_id = await start_poll(client, session)
    await poll_to_end(client, reply_id, session.token)
    auth = {"Authorization": f"Bearer {session.token}"}

    answers = [
        await client.get(f"/api/v1/messages/{reply_id}", {"after": "²"}, headers=auth),
        await client.get(f"/api/v1/messages/{reply_id}", {"after": "1", "wait": "\u0661"}, headers=auth),
        await client.get(f"/api/v1/messages/{reply_id}/stream", {"last_event_id": "①"}, headers=auth),
        await client.get("/api/v1/stream", es_params(session, tenant, last_event_id="\u0663")),
    ]

    assert [(a.status_code, a.json()["code"]) for a in answers] == [(400, "STREAM_003")] * 4
    assert await sync_to_async(Message.objects.filter(session_id=session.id).count)() == 2


@pytest.mark.parametrize("field", ["user_input", "message_id"])
async def test_eventsource_start_refuses_a_null_character_and_stores_nothing(
    session: SessionInfo, tenant: Tenant, field: str
) -> None:
    response = await AsyncClient().get("/api/v1/stream", es_params(session, tenant, **{field: "a\x00b"}))

    assert (response.status_code, response.json()["code"]) == (400, "INVALID_INPUT")
    assert not await sync_to_async(Message.objects.filter(session_id=session.id).exists)()


async def test_eventsource_start_with_a_cursor_into_a_message_never_sent_stores_nothing(
    session: SessionInfo, tenant: Tenant
) -> None:
    response = await AsyncClient().get(
        "/api/v1/stream", es_params(session, tenant, message_id="never-sent"), headers={"Last-Event-ID": "50"}
    )

    assert (response.status_code, response.json()["code"]) == (400, "STREAM_003")
    assert not await sync_to_async(Message.objects.filter(session_id=session.id).exists)()
    assert await sync_to_async(open_streams)(session_pool(session.id)) == 0


@pytest.mark.parametrize("method", ["post", "put", "delete", "head"])
async def test_the_read_routes_answer_other_methods_with_a_json_405(session: SessionInfo, method: str) -> None:
    client = AsyncClient()
    reply_id = await start_poll(client, session)
    auth = {"Authorization": f"Bearer {session.token}"}

    answers = [
        await getattr(client, method)(path, headers=auth)
        for path in (f"/api/v1/messages/{reply_id}", f"/api/v1/messages/{reply_id}/stream", "/api/v1/stream")
    ]

    assert [(a.status_code, a["Allow"], a["Content-Type"]) for a in answers] == [(405, "GET", "application/json")] * 3
    if method != "head":
        assert {a.json()["code"] for a in answers} == {"METHOD_NOT_ALLOWED"}


async def test_a_stream_whose_body_never_starts_is_not_kept_alive(session: SessionInfo) -> None:
    """The client left while the view ran: nobody reads the body, so nothing may renew its slot (its lease lapses)."""
    response = await AsyncClient().post(
        session.messages_url,
        {"content": QUESTION, "mode": "stream"},
        content_type="application/json",
        headers={"Authorization": f"Bearer {session.token}"},
    )

    assert response.status_code == 200
    renewers = [t for t in asyncio.all_tasks() if t.get_coro().__name__ == "_renew_forever"]  # type: ignore[union-attr]
    assert renewers == []
    assert await sync_to_async(open_streams)(session_pool(session.id)) == 1  # taken, and left to lapse

"""The streaming rollout: the server places each visitor, the same way every time, in proportion to the tenant's
percentage; sessions outside it get the tenant's fallback, and every streaming route refuses them
(tenants/rollout.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import AsyncClient
from rest_framework.test import APIClient

from chat.models import ChatSession, Message
from chat.services import session_create
from config.asgi import router
from tenants.models import Tenant
from tenants.rollout import STREAM, delivery_for, rollout_bucket
from tenants.services import tenant_update
from tests.conftest import SessionInfo
from tests.streaming.conftest import read_body

pytestmark = pytest.mark.django_db

VISITORS = [f"visitor-{n}" for n in range(1000)]


def streaming_visitors(tenant: Tenant) -> set[str]:
    """Who streams among ``VISITORS``, as placed by real sessions."""
    return {visitor for visitor in VISITORS if session_create(tenant=tenant, visitor_id=visitor).delivery == STREAM}


def placed(tenant: Tenant, visitor: str) -> str:
    return delivery_for(tenant=tenant, bucket=rollout_bucket(tenant_id=tenant.pk, visitor_key=visitor))


# --- Placement --------------------------------------------------------------------------------------------------------


def test_thirty_percent_streams_to_thirty_percent_of_visitors(tenant: Tenant) -> None:
    tenant_update(tenant=tenant, streaming_percentage=30)

    streaming = streaming_visitors(tenant)

    assert 250 <= len(streaming) <= 350
    assert ChatSession.objects.filter(tenant=tenant).exclude(delivery=STREAM).count() == 1000 - len(streaming)


def test_the_same_visitor_always_gets_the_same_bucket_and_delivery(tenant: Tenant) -> None:
    tenant_update(tenant=tenant, streaming_percentage=50)

    first = [session_create(tenant=tenant, visitor_id=v) for v in VISITORS[:100]]
    again = [session_create(tenant=tenant, visitor_id=v) for v in VISITORS[:100]]

    assert [(s.rollout_bucket, s.delivery) for s in first] == [(s.rollout_bucket, s.delivery) for s in again]
    assert {s.delivery for s in first} == {STREAM, "poll"}


def test_raising_the_percentage_keeps_everyone_who_already_streamed(tenant: Tenant) -> None:
    tenant_update(tenant=tenant, streaming_percentage=30)
    at_thirty = streaming_visitors(tenant)

    tenant_update(tenant=tenant, streaming_percentage=60)
    at_sixty = streaming_visitors(tenant)

    assert at_thirty <= at_sixty
    assert 550 <= len(at_sixty) <= 650


@pytest.mark.parametrize(("percentage", "streaming"), [(0, 0), (100, 1000)])
def test_zero_gives_nobody_and_a_hundred_gives_everybody(tenant: Tenant, percentage: int, streaming: int) -> None:
    tenant_update(tenant=tenant, streaming_percentage=percentage)

    assert sum(placed(tenant, v) == STREAM for v in VISITORS) == streaming


def test_buckets_run_from_1_to_100_and_are_used_evenly() -> None:
    buckets = [rollout_bucket(tenant_id=1, visitor_key=f"v{n}") for n in range(10_000)]

    assert min(buckets) == 1 and max(buckets) == 100
    assert all(60 <= buckets.count(b) <= 140 for b in range(1, 101))


def test_a_visitors_bucket_with_one_tenant_says_nothing_about_another(tenant: Tenant, other_tenant: Tenant) -> None:
    mine = {v: rollout_bucket(tenant_id=tenant.pk, visitor_key=v) for v in VISITORS}
    theirs = {v: rollout_bucket(tenant_id=other_tenant.pk, visitor_key=v) for v in VISITORS}
    early_here = [v for v in VISITORS if mine[v] <= 30]

    assert sum(mine[v] != theirs[v] for v in VISITORS) > 900
    assert 0.2 <= sum(theirs[v] <= 30 for v in early_here) / len(early_here) <= 0.4  # not the same 30 % again


@pytest.mark.parametrize("fallback", ["poll", "batch"])
def test_with_streaming_off_everyone_gets_the_tenants_fallback(tenant: Tenant, fallback: str) -> None:
    tenant_update(tenant=tenant, streaming_enabled=False, streaming_percentage=100, fallback_delivery=fallback)

    deliveries = {session_create(tenant=tenant, visitor_id=v).delivery for v in VISITORS[:200]}

    assert deliveries == {fallback}


def test_outside_the_rollout_a_visitor_gets_the_tenants_fallback(tenant: Tenant) -> None:
    tenant_update(tenant=tenant, streaming_percentage=50, fallback_delivery="batch")

    deliveries = {placed(tenant, v) for v in VISITORS}

    assert deliveries == {STREAM, "batch"}


# --- Through the API --------------------------------------------------------------------------------------------------


def start(api: APIClient, tenant: Tenant, **body: str) -> dict[str, Any]:
    response = api.post("/api/v1/sessions", {"tenant": tenant.public_key, **body}, format="json")
    assert response.status_code == 201, response.content
    result: dict[str, Any] = response.json()
    return result


@pytest.fixture
def roomy(tenant: Tenant) -> Tenant:
    """The tenant at 50 %, letting one test address start many sessions."""
    return tenant_update(tenant=tenant, streaming_percentage=50, sessions_per_ip_per_minute=1000)


def test_a_visitor_starting_again_gets_the_same_delivery_as_before_and_as_the_widget_config_said(
    api: APIClient, roomy: Tenant
) -> None:
    for visitor in VISITORS[:20]:
        config = api.get("/api/v1/widget/config", {"tenant": roomy.public_key, "visitor_id": visitor}).json()

        first, second = start(api, roomy, visitor_id=visitor), start(api, roomy, visitor_id=visitor)

        assert first["delivery"] == second["delivery"] == config["delivery"]


def test_without_a_visitor_id_each_session_is_placed_by_its_own_id(api: APIClient, roomy: Tenant) -> None:
    sessions = [start(api, roomy) for _ in range(60)]

    for body in sessions:
        bucket = rollout_bucket(tenant_id=roomy.pk, visitor_key=body["id"])
        assert ChatSession.objects.get(id=body["id"]).rollout_bucket == bucket
        assert body["delivery"] == (STREAM if bucket <= 50 else "poll")
    assert {body["delivery"] for body in sessions} == {STREAM, "poll"}


def test_a_change_of_percentage_applies_to_the_next_session_and_never_to_a_running_one(
    api: APIClient, roomy: Tenant
) -> None:
    tenant_update(tenant=roomy, streaming_percentage=0)
    before = start(api, roomy, visitor_id="returning-visitor")

    tenant_update(tenant=roomy, streaming_percentage=100)
    after = start(api, roomy, visitor_id="returning-visitor")

    assert (before["delivery"], after["delivery"]) == ("poll", STREAM)
    assert ChatSession.objects.get(id=before["id"]).delivery == "poll"  # a conversation never flips transport


# --- Streaming routes refuse sessions outside the rollout -------------------------------------------------------------

STREAMING_ROUTES = ["fetch streaming", "SSE", "EventSource start", "WebSocket"]


async def stream_outcome(route: str, tenant: Tenant, session: SessionInfo) -> tuple[int, dict[str, Any]]:
    """(status, error body) of opening a stream; a WebSocket's close code less 4000 and its error frame."""
    client = AsyncClient()
    bearer = {"Authorization": f"Bearer {session.token}"}
    if route == "WebSocket":
        socket = WebsocketCommunicator(router, f"/ws/v1/sessions/{session.id}/?token={session.stream_token}")
        await socket.connect(timeout=5)
        if await socket.receive_nothing(timeout=0.3):
            await socket.disconnect()
            return 101, {}
        frame = await socket.receive_json_from(timeout=5)
        closed = await socket.receive_output(timeout=5)
        return int(closed["code"]) - 4000, frame
    if route == "fetch streaming":
        body = {"content": "Hello", "mode": "stream"}
        response = await client.post(session.messages_url, body, content_type="application/json", headers=bearer)
    elif route == "SSE":
        batch = {"content": "Hello", "mode": "batch"}
        reply = await client.post(session.messages_url, batch, content_type="application/json", headers=bearer)
        response = await client.get(f"/api/v1/messages/{reply.json()['id']}/stream", {"token": session.stream_token})
    else:
        params = {"tenant": tenant.public_key, "session_id": str(session.id), "message_id": "es-1"}
        response = await client.get("/api/v1/stream", {**params, "user_input": "Hello", "token": session.stream_token})
    if response.streaming:
        await read_body(response)
        return response.status_code, {}
    return response.status_code, response.json()


def user_messages(session: SessionInfo) -> list[str]:
    return list(Message.objects.filter(session_id=session.id, role="user").values_list("content", flat=True))


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("route", STREAMING_ROUTES)
@pytest.mark.parametrize("fallback", ["poll", "batch"])
async def test_a_session_placed_outside_the_rollout_may_not_stream(
    tenant: Tenant, make_session: Callable[..., SessionInfo], route: str, fallback: str
) -> None:
    await sync_to_async(tenant_update)(tenant=tenant, streaming_percentage=0, fallback_delivery=fallback)
    session = await sync_to_async(make_session)(tenant)

    status, error = await stream_outcome(route, tenant, session)

    assert session.delivery == fallback
    assert (status, error["code"]) == (403, "STREAM_002")
    if route != "WebSocket":
        assert error["details"] == {"delivery": fallback}
    assert await sync_to_async(user_messages)(session) == (["Hello"] if route == "SSE" else [])  # SSE's own batch


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("route", STREAMING_ROUTES)
async def test_switching_streaming_off_closes_every_streaming_route_even_to_streaming_sessions(
    tenant: Tenant, make_session: Callable[..., SessionInfo], route: str
) -> None:
    session = await sync_to_async(make_session)(tenant)
    await sync_to_async(tenant_update)(tenant=tenant, streaming_enabled=False)

    status, error = await stream_outcome(route, tenant, session)

    assert session.delivery == STREAM
    assert (status, error["code"]) == (403, "STREAM_002")
    assert await sync_to_async(user_messages)(session) == (["Hello"] if route == "SSE" else [])


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("route", STREAMING_ROUTES)
async def test_a_session_inside_the_rollout_may_stream(
    tenant: Tenant, make_session: Callable[..., SessionInfo], route: str
) -> None:
    session = await sync_to_async(make_session)(tenant)

    status, _ = await stream_outcome(route, tenant, session)

    assert status in {101, 200}


def test_the_stored_bucket_is_what_placed_the_session(tenant: Tenant) -> None:
    tenant_update(tenant=tenant, streaming_percentage=40)
    session = session_create(tenant=tenant, visitor_id="v-42")

    assert session.rollout_bucket == rollout_bucket(tenant_id=tenant.pk, visitor_key="v-42")
    assert session.delivery == (STREAM if session.rollout_bucket <= 40 else "poll")

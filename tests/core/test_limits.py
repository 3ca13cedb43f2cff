"""Per-tenant limits: sliding-window rates for messages, sessions and fallback reports, and leased slots for open
streams; refusals are 429 with a Retry-After and leave nothing stored (core/limits.py)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import AsyncClient
from pytest_django import Settings
from rest_framework.test import APIClient

from chat.models import ChatSession, FallbackReport, Message
from config.asgi import router
from core.errors import ApiError
from core.limits import (
    SLOT_LEASE_SECONDS,
    WINDOW_SECONDS,
    Rate,
    StreamSlot,
    open_streams,
    rate_check,
    session_pool,
    stream_slot_take,
    tenant_pool,
)
from tenants.models import Tenant
from tenants.services import tenant_update
from tests.conftest import SessionInfo
from tests.streaming.conftest import read_body

pytestmark = pytest.mark.django_db

MINUTE_START = 60.0 * 29_000_000  # the first second of some minute; rates count in whole minutes


class Clock:
    """Stands in for the ``time`` module inside ``core.limits``; tests move it by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Iterator[Clock]:
    fake = Clock(MINUTE_START)
    with mock.patch("core.limits.time", fake):
        yield fake


def attempt(rate: Rate) -> int | None:
    """None if the hit is allowed; else the refusal's Retry-After, after checking it is a proper 429."""
    try:
        rate_check(rate)
    except ApiError as error:
        assert (error.status_code, error.error_code.value) == (429, "RATE_LIMITED")
        assert error.headers()["Retry-After"] == str(error.retry_after)
        return error.retry_after
    return None


def rate(limit: int, key: str = "k") -> Rate:
    return Rate("test", key, limit, "test hits")


def assert_retry_after(value: Any) -> None:
    """A Retry-After a browser can use: a whole number of seconds, at least 1. At most two windows: hits made at the
    very start of a minute still weigh on the whole next one, so an honest wait can exceed a minute."""
    assert str(value).isdigit()
    assert 1 <= int(value) <= 2 * WINDOW_SECONDS


# --- rate_check: a sliding window -------------------------------------------------------------------------------------


@pytest.mark.parametrize("into", [0.0, 0.4, 30.0, 59.6])
def test_n_hits_pass_and_the_next_is_refused_with_a_retry_after(clock: Clock, into: float) -> None:
    clock.now = MINUTE_START + into

    allowed = [attempt(rate(3)) for _ in range(3)]
    refused = attempt(rate(3))

    assert allowed == [None, None, None]
    assert refused is not None
    assert_retry_after(refused)


def test_the_refusal_names_the_limit_and_the_scope(clock: Clock) -> None:
    rate_check(rate(1))

    with pytest.raises(ApiError) as refused:
        rate_check(rate(1))

    assert refused.value.details == {"limit": 1, "scope": "test"}
    assert "at most 1 a minute" in refused.value.message


def test_a_refused_hit_is_not_counted(clock: Clock) -> None:
    clock.now = MINUTE_START + 30
    for _ in range(3):
        attempt(rate(3))
    hammering = [attempt(rate(3)) for _ in range(10)]

    clock.now += WINDOW_SECONDS  # half of last minute's 3 hits still weigh: room for exactly one more
    next_minute = [attempt(rate(3)), attempt(rate(3))]

    assert all(retry is not None for retry in hammering)
    assert next_minute[0] is None
    assert next_minute[1] is not None


def test_the_window_slides_instead_of_resetting_each_minute(clock: Clock) -> None:
    attempt(rate(2))
    attempt(rate(2))

    clock.now = MINUTE_START + WINDOW_SECONDS  # a fixed window would start afresh here
    at_the_turn = attempt(rate(2))
    clock.now = MINUTE_START + WINDOW_SECONDS + 30  # half of last minute's hits have slid out
    half_way = attempt(rate(2))
    half_way_again = attempt(rate(2))

    assert at_the_turn is not None
    assert half_way is None
    assert half_way_again is not None


@pytest.mark.parametrize(
    ("limit", "hits_at", "refused_at"),
    [
        pytest.param(3, 30.0, 30.0, id="this minute is full"),
        pytest.param(3, 0.0, 0.0, id="this minute was filled at its start"),
        pytest.param(1, 59.0, 59.0, id="one a minute, used at the minute's end"),
        pytest.param(3, 0.0, WINDOW_SECONDS, id="last minute's share still weighs too much"),
        pytest.param(5, 40.0, WINDOW_SECONDS + 10, id="a bigger share sliding out part way into this minute"),
    ],
)
def test_retry_after_is_exactly_how_long_to_wait(clock: Clock, limit: int, hits_at: float, refused_at: float) -> None:
    """Wait Retry-After and the hit passes; retry two seconds sooner and it is refused again (and not counted): the
    header is the honest wait, rounded up to a whole second."""
    clock.now = MINUTE_START + hits_at
    for _ in range(limit):
        assert attempt(rate(limit)) is None
    clock.now = MINUTE_START + refused_at
    retry_after = attempt(rate(limit))
    assert retry_after is not None
    refused_at = clock.now

    clock.now = refused_at + retry_after - 2
    too_early = attempt(rate(limit))
    clock.now = refused_at + retry_after
    on_time = attempt(rate(limit))

    assert retry_after >= 2
    assert too_early is not None
    assert on_time is None


def test_each_key_is_counted_on_its_own(clock: Clock) -> None:
    attempt(rate(1, key="a"))

    assert attempt(rate(1, key="a")) is not None
    assert attempt(rate(1, key="b")) is None


def test_limits_fail_open_when_the_cache_is_down(clock: Clock) -> None:
    with mock.patch("core.limits.cache") as cache:
        cache.incr.side_effect = ConnectionError("redis is restarting")
        results = [attempt(rate(1)) for _ in range(5)]

    assert results == [None] * 5


# --- Over HTTP: messages ----------------------------------------------------------------------------------------------


def send(api: APIClient, session: SessionInfo, content: str = "Where is my parcel?", **extra: Any) -> Any:
    return api.post(session.messages_url, {"content": content, **extra}, format="json", **session.auth)


def assert_rate_limited(response: Any, scope: str) -> None:
    assert response.status_code == 429
    assert response.json()["code"] == "RATE_LIMITED"
    assert response.json()["details"]["scope"] == scope
    assert_retry_after(response["Retry-After"])


def test_a_session_over_its_messages_per_minute_is_refused_and_nothing_is_stored(
    api: APIClient, tenant: Tenant, session: SessionInfo
) -> None:
    tenant_update(tenant=tenant, messages_per_minute=2)
    sent = [send(api, session, f"Question {n}?").status_code for n in range(2)]

    third = send(api, session, "Question 3?")

    assert sent == [200, 200]
    assert_rate_limited(third, "session-messages")
    assert not Message.objects.filter(content="Question 3?").exists()
    assert Message.objects.filter(session_id=session.id).count() == 4


def test_a_retry_with_the_same_client_message_id_is_neither_refused_nor_counted(
    api: APIClient, tenant: Tenant, session: SessionInfo
) -> None:
    tenant_update(tenant=tenant, messages_per_minute=2)
    first = send(api, session, "Hello?", client_message_id="a")
    retries = [send(api, session, "Hello?", client_message_id="a") for _ in range(3)]
    second = send(api, session, "Still there?", client_message_id="b")
    retry_at_the_limit = send(api, session, "Still there?", client_message_id="b")

    third = send(api, session, "Anyone?", client_message_id="c")

    assert first.status_code == 200 and second.status_code == 200
    assert [r.status_code for r in retries] == [200, 200, 200]
    assert {r.json()["id"] for r in retries} == {first.json()["id"]}
    assert retry_at_the_limit.status_code == 200 and retry_at_the_limit.json()["id"] == second.json()["id"]
    assert_rate_limited(third, "session-messages")


def test_the_tenants_messages_per_minute_counts_across_its_sessions(
    api: APIClient,
    tenant: Tenant,
    other_tenant: Tenant,
    make_session: Callable[..., SessionInfo],
) -> None:
    tenant_update(tenant=tenant, tenant_messages_per_minute=3)
    one, two = make_session(tenant), make_session(tenant)
    allowed = [send(api, one).status_code, send(api, one, "More?").status_code, send(api, two).status_code]

    over = send(api, two, "And another?")
    elsewhere = send(api, make_session(other_tenant))

    assert allowed == [200, 200, 200]
    assert_rate_limited(over, "tenant-messages")
    assert Message.objects.filter(session_id=two.id).count() == 2
    assert elsewhere.status_code == 200


# --- Over HTTP: new sessions per IP -----------------------------------------------------------------------------------


def start(api: APIClient, tenant: Tenant, **meta: Any) -> Any:
    return api.post("/api/v1/sessions", {"tenant": tenant.public_key}, format="json", **meta)


def test_one_address_may_start_only_so_many_sessions_a_minute(api: APIClient, tenant: Tenant) -> None:
    tenant_update(tenant=tenant, sessions_per_ip_per_minute=2)
    allowed = [start(api, tenant, REMOTE_ADDR="203.0.113.7").status_code for _ in range(2)]

    third = start(api, tenant, REMOTE_ADDR="203.0.113.7")
    another_address = start(api, tenant, REMOTE_ADDR="198.51.100.9")

    assert allowed == [201, 201]
    assert_rate_limited(third, "session-create")
    assert another_address.status_code == 201
    assert ChatSession.objects.count() == 3


def test_the_per_address_limit_is_each_tenants_own(api: APIClient, tenant: Tenant, other_tenant: Tenant) -> None:
    tenant_update(tenant=tenant, sessions_per_ip_per_minute=1)
    start(api, tenant, REMOTE_ADDR="203.0.113.7")

    assert start(api, tenant, REMOTE_ADDR="203.0.113.7").status_code == 429
    assert start(api, other_tenant, REMOTE_ADDR="203.0.113.7").status_code == 201


def test_without_trusted_proxies_x_forwarded_for_is_ignored(api: APIClient, tenant: Tenant) -> None:
    tenant_update(tenant=tenant, sessions_per_ip_per_minute=2)
    for n in range(2):
        start(api, tenant, REMOTE_ADDR="203.0.113.7", HTTP_X_FORWARDED_FOR=f"192.0.2.{n}")

    dressed_up = start(api, tenant, REMOTE_ADDR="203.0.113.7", HTTP_X_FORWARDED_FOR="192.0.2.99")

    assert_rate_limited(dressed_up, "session-create")


def test_behind_one_proxy_the_address_it_saw_is_counted(api: APIClient, tenant: Tenant, settings: Settings) -> None:
    settings.BROOK_PROXY_HOPS = 1
    tenant_update(tenant=tenant, sessions_per_ip_per_minute=2)
    proxy = {"REMOTE_ADDR": "10.0.0.1"}
    allowed = [start(api, tenant, HTTP_X_FORWARDED_FOR="203.0.113.7", **proxy).status_code for _ in range(2)]

    third = start(api, tenant, HTTP_X_FORWARDED_FOR="203.0.113.7", **proxy)
    forged_left_entry = start(api, tenant, HTTP_X_FORWARDED_FOR="192.0.2.1, 203.0.113.7", **proxy)
    another_visitor = start(api, tenant, HTTP_X_FORWARDED_FOR="198.51.100.9", **proxy)

    assert allowed == [201, 201]
    assert_rate_limited(third, "session-create")
    assert forged_left_entry.status_code == 429  # the client may write anything to the left of what the proxy saw
    assert another_visitor.status_code == 201


# --- Over HTTP: fallback reports --------------------------------------------------------------------------------------


def test_fallback_reports_are_limited_to_twenty_a_minute_per_session(
    api: APIClient, tenant: Tenant, session: SessionInfo, make_session: Callable[..., SessionInfo]
) -> None:
    report = {"reason": "timeout", "from_delivery": "stream", "to_delivery": "poll"}
    url = f"{session.url}/fallback"
    allowed = [api.post(url, report, format="json", **session.auth).status_code for _ in range(20)]

    over = api.post(url, report, format="json", **session.auth)
    other = make_session(tenant)
    elsewhere = api.post(f"{other.url}/fallback", report, format="json", **other.auth)

    assert allowed == [201] * 20
    assert_rate_limited(over, "fallbacks")
    assert FallbackReport.objects.filter(session_id=session.id).count() == 20
    assert elsewhere.status_code == 201


# --- Open streams -----------------------------------------------------------------------------------------------------


def take(session_id: uuid.UUID, *, per_session: int = 2, per_tenant: int = 100, tenant_id: int = 1) -> StreamSlot:
    return stream_slot_take(tenant_id=tenant_id, session_id=session_id, per_session=per_session, per_tenant=per_tenant)


def refused_take(session_id: uuid.UUID, **limits: int) -> ApiError:
    with pytest.raises(ApiError) as refused:
        take(session_id, **limits)
    return refused.value


def test_a_session_may_hold_only_so_many_streams(clock: Clock) -> None:
    session_id = uuid.uuid4()
    take(session_id)
    take(session_id)

    refused = refused_take(session_id)

    assert (refused.status_code, refused.error_code.value) == (429, "TOO_MANY_STREAMS")
    assert refused.retry_after is not None
    assert_retry_after(refused.retry_after)
    assert refused.headers()["Retry-After"] == str(refused.retry_after)
    assert open_streams(session_pool(session_id)) == 2


def test_a_released_slot_is_free_again(clock: Clock) -> None:
    session_id = uuid.uuid4()
    first = take(session_id)
    take(session_id)

    first.release()

    assert open_streams(session_pool(session_id)) == 1
    take(session_id)
    assert open_streams(session_pool(session_id)) == 2


def test_a_slot_not_renewed_lapses_after_its_lease(clock: Clock) -> None:
    session_id = uuid.uuid4()
    take(session_id)
    take(session_id)

    clock.now += SLOT_LEASE_SECONDS - 1
    still_held = open_streams(session_pool(session_id))
    clock.now += 2

    assert still_held == 2
    assert open_streams(session_pool(session_id)) == 0
    take(session_id)


def test_a_renewed_slot_does_not_lapse(clock: Clock) -> None:
    session_id = uuid.uuid4()
    kept = take(session_id)
    take(session_id)

    clock.now += SLOT_LEASE_SECONDS - 5
    kept.renew()
    clock.now += 10

    assert open_streams(session_pool(session_id)) == 1
    take(session_id)
    refused_take(session_id)


def test_the_tenant_cap_counts_across_sessions_and_a_refusal_holds_nothing(clock: Clock) -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    take(first, per_tenant=1, tenant_id=77)

    refused = refused_take(second, per_tenant=1, tenant_id=77)

    assert refused.error_code.value == "TOO_MANY_STREAMS"
    assert open_streams(session_pool(second)) == 0  # its session slot was given back
    assert open_streams(tenant_pool(77)) == 1
    take(second, per_tenant=1, tenant_id=78)  # another tenant's cap is its own


@pytest.fixture
def finished_reply(api: APIClient, session: SessionInfo) -> uuid.UUID:
    response = api.post(session.messages_url, {"content": "Hello", "mode": "batch"}, format="json", **session.auth)
    assert response.status_code == 200, response.content
    return uuid.UUID(response.json()["id"])


def hold_every_slot(tenant: Tenant, session: SessionInfo) -> StreamSlot:
    """Another tab of the same visitor already has the session's one allowed stream open."""
    tenant_update(tenant=tenant, max_streams_per_session=1)
    return stream_slot_take(tenant_id=tenant.pk, session_id=session.id, per_session=1, per_tenant=100)


@pytest.mark.django_db(transaction=True)
async def test_an_sse_stream_beyond_the_sessions_limit_is_429_until_a_slot_frees(
    tenant: Tenant, session: SessionInfo, finished_reply: uuid.UUID
) -> None:
    held = await sync_to_async(hold_every_slot)(tenant, session)
    client = AsyncClient()
    url = f"/api/v1/messages/{finished_reply}/stream"

    refused = await client.get(url, {"token": session.stream_token})
    await sync_to_async(held.release)()
    allowed = await client.get(url, {"token": session.stream_token})
    await read_body(allowed)

    assert (refused.status_code, refused.json()["code"]) == (429, "TOO_MANY_STREAMS")
    assert_retry_after(refused["Retry-After"])
    assert allowed.status_code == 200


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("route", ["fetch streaming", "EventSource start"])
async def test_a_new_stream_beyond_the_sessions_limit_stores_no_message(
    tenant: Tenant, session: SessionInfo, route: str
) -> None:
    await sync_to_async(hold_every_slot)(tenant, session)
    client = AsyncClient()

    if route == "fetch streaming":
        response = await client.post(
            session.messages_url,
            {"content": "Hello", "mode": "stream"},
            content_type="application/json",
            headers={"Authorization": f"Bearer {session.token}"},
        )
    else:
        params = {
            "tenant": tenant.public_key,
            "session_id": str(session.id),
            "message_id": "es-1",
            "user_input": "Hello",
            "token": session.stream_token,
        }
        response = await client.get("/api/v1/stream", params)

    assert (response.status_code, response.json()["code"]) == (429, "TOO_MANY_STREAMS")
    assert_retry_after(response["Retry-After"])
    assert not await sync_to_async(Message.objects.filter(session_id=session.id).exists)()


@pytest.mark.django_db(transaction=True)
async def test_a_websocket_beyond_the_sessions_limit_is_closed_with_4429(tenant: Tenant, session: SessionInfo) -> None:
    await sync_to_async(hold_every_slot)(tenant, session)
    socket = WebsocketCommunicator(router, f"/ws/v1/sessions/{session.id}/?token={session.stream_token}")

    await socket.connect(timeout=5)
    error = await socket.receive_json_from(timeout=5)
    closed = await socket.receive_output(timeout=5)

    assert error["code"] == "TOO_MANY_STREAMS"
    assert_retry_after(error["retry_after"])
    assert closed["code"] == 4429

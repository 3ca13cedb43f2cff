"""Who may touch what, on every route: another tenant's or another session's token finds nothing, expired, forged and
misplaced tokens are refused, and a refused request leaves nothing behind (chat/access.py, chat/tokens.py)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple
from unittest import mock
from urllib.parse import urlencode

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.http import StreamingHttpResponse
from django.test import AsyncClient
from pytest_django import Settings
from rest_framework.test import APIClient

from chat.models import ChatSession, Event, FallbackReport, Message, MessageStatus, Role
from chat.services import message_submit
from config.asgi import router
from tenants.models import Tenant
from tests.conftest import SessionInfo
from tests.streaming.conftest import read_body

pytestmark = [pytest.mark.django_db(transaction=True)]

Where = Literal["header", "url"]


@dataclass(frozen=True)
class Route:
    """One route of the widget API: how to call it, what the owner gets, what a stranger is told is missing."""

    name: str
    method: Literal["GET", "POST", "WS"]
    path: str  # {session}, {message} and {tenant} are filled in
    body: dict[str, Any] | None
    owner_status: int  # 101: the WebSocket is accepted and stays open
    not_found: str
    streams: bool = False  # a streaming route, which a browser may open with a stream token in the URL

    @property
    def carriers(self) -> list[Where]:
        return ["header", "url"] if self.streams else ["header"]

    def __str__(self) -> str:
        return self.name


ROUTES = [
    Route("session history", "GET", "/api/v1/sessions/{session}", None, 200, "SESSION_NOT_FOUND"),
    Route(
        "send a message",
        "POST",
        "/api/v1/sessions/{session}/messages",
        {"content": "Where is my parcel?", "mode": "batch"},
        200,
        "SESSION_NOT_FOUND",
    ),
    Route("stream token", "POST", "/api/v1/sessions/{session}/stream-token", None, 201, "SESSION_NOT_FOUND"),
    Route(
        "fallback report",
        "POST",
        "/api/v1/sessions/{session}/fallback",
        {"reason": "timeout", "from_delivery": "stream", "to_delivery": "poll"},
        201,
        "SESSION_NOT_FOUND",
    ),
    Route("message poll", "GET", "/api/v1/messages/{message}", None, 200, "MESSAGE_NOT_FOUND", streams=True),
    Route("message SSE", "GET", "/api/v1/messages/{message}/stream", None, 200, "MESSAGE_NOT_FOUND", streams=True),
    Route("message cancel", "POST", "/api/v1/messages/{message}/cancel", None, 200, "MESSAGE_NOT_FOUND"),
    Route(
        "EventSource start",
        "GET",
        "/api/v1/stream?tenant={tenant}&session_id={session}&message_id=es-1&user_input=Where+is+my+parcel%3F",
        None,
        200,
        "SESSION_NOT_FOUND",
        streams=True,
    ),
    Route("WebSocket", "WS", "/ws/v1/sessions/{session}/", None, 101, "SESSION_NOT_FOUND", streams=True),
]
REST_ROUTES = [route for route in ROUTES if not route.streams]


@dataclass(frozen=True)
class World:
    """A session with a finished reply, a second session of the same tenant, and a session of another tenant."""

    tenant_key: str
    owner: SessionInfo
    neighbour: SessionInfo
    outsider: SessionInfo
    reply_id: uuid.UUID


@pytest.fixture
def world(api: APIClient, tenant: Tenant, other_tenant: Tenant, make_session: Callable[..., SessionInfo]) -> World:
    owner = make_session(tenant)
    reply = api.post(owner.messages_url, {"content": "Hello", "mode": "batch"}, format="json", **owner.auth)
    assert reply.status_code == 200, reply.content
    return World(
        tenant_key=tenant.public_key,
        owner=owner,
        neighbour=make_session(tenant),
        outsider=make_session(other_tenant),
        reply_id=uuid.UUID(reply.json()["id"]),
    )


class Outcome(NamedTuple):
    """What the caller saw: an HTTP status (a WebSocket's close code less 4000) and the error code, if any."""

    status: int
    code: str | None


def token_of(who: SessionInfo, where: Where) -> str:
    """The token that belongs where: the session token in the header, the short-lived stream token in a URL."""
    return who.token if where == "header" else who.stream_token


async def call(route: Route, world: World, *, where: Where, token: str) -> Outcome:
    path = route.path.format(session=world.owner.id, message=world.reply_id, tenant=world.tenant_key)
    headers: dict[str, str] = {}
    if where == "header":
        headers["Authorization"] = f"Bearer {token}"
    else:
        path += ("&" if "?" in path else "?") + urlencode({"token": token})
    if route.method == "WS":
        return await _socket(path, headers)
    client = AsyncClient()
    if route.method == "GET":
        response = await client.get(path, headers=headers)
    else:
        response = await client.post(path, route.body or {}, content_type="application/json", headers=headers)
    if isinstance(response, StreamingHttpResponse):
        await read_body(response)
        return Outcome(response.status_code, None)
    code = response.json()["code"] if response.status_code >= 400 else None
    return Outcome(response.status_code, code)


async def _socket(path: str, headers: dict[str, str]) -> Outcome:
    raw = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    socket = WebsocketCommunicator(router, path, headers=raw)
    connected, _ = await socket.connect(timeout=5)
    assert connected  # refusals are told in a frame, then closed with 4000 + status
    if await socket.receive_nothing(timeout=0.3):
        await socket.disconnect()
        return Outcome(101, None)
    frame = await socket.receive_json_from(timeout=5)
    closed = await socket.receive_output(timeout=5)
    assert frame["type"] == "error" and closed["type"] == "websocket.close"
    return Outcome(int(closed["code"]) - 4000, str(frame["code"]))


def footprint() -> tuple[list[tuple[str, str]], int, int, int]:
    """Everything a request could write: messages and their status, events, fallback reports, sessions."""
    messages = sorted((str(pk), status) for pk, status in Message.objects.values_list("id", "status"))
    return messages, Event.objects.count(), FallbackReport.objects.count(), ChatSession.objects.count()


class Clock:
    """Stands in for the ``time`` module inside ``django.core.signing``: tokens are read at ``now``."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now


@contextmanager
def tokens_read_at(moment: float) -> Iterator[Clock]:
    clock = Clock(moment)
    with mock.patch("django.core.signing.time", clock):
        yield clock


def forged(token: str) -> str:
    """The same payload with a signature that is not ours."""
    return token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")


routes = pytest.mark.parametrize("route", ROUTES, ids=str)
routes_and_carriers = pytest.mark.parametrize(
    ("route", "where"),
    [pytest.param(route, where, id=f"{route}-{where}") for route in ROUTES for where in route.carriers],
)


@routes_and_carriers
async def test_the_owner_gets_in(world: World, route: Route, where: Where) -> None:
    outcome = await call(route, world, where=where, token=token_of(world.owner, where))

    assert outcome == Outcome(route.owner_status, None)


@routes_and_carriers
async def test_another_tenants_token_finds_nothing(world: World, route: Route, where: Where) -> None:
    before = await sync_to_async(footprint)()

    outcome = await call(route, world, where=where, token=token_of(world.outsider, where))

    assert outcome == Outcome(404, route.not_found)
    assert await sync_to_async(footprint)() == before


@routes_and_carriers
async def test_a_token_for_another_session_of_the_same_tenant_finds_nothing(
    world: World, route: Route, where: Where
) -> None:
    before = await sync_to_async(footprint)()

    outcome = await call(route, world, where=where, token=token_of(world.neighbour, where))

    assert outcome == Outcome(404, route.not_found)
    assert await sync_to_async(footprint)() == before


@routes_and_carriers
async def test_an_expired_token_is_401_auth_expired(world: World, route: Route, where: Where) -> None:
    ttl = settings.BROOK_SESSION_TOKEN_TTL if where == "header" else settings.BROOK_STREAM_TOKEN_TTL
    before = await sync_to_async(footprint)()

    with tokens_read_at(time.time() + ttl + 1):
        outcome = await call(route, world, where=where, token=token_of(world.owner, where))

    assert outcome == Outcome(401, "AUTH_EXPIRED")
    assert await sync_to_async(footprint)() == before


@routes_and_carriers
async def test_a_forged_token_is_401_auth_invalid(world: World, route: Route, where: Where) -> None:
    before = await sync_to_async(footprint)()

    outcome = await call(route, world, where=where, token=forged(token_of(world.owner, where)))

    assert outcome == Outcome(401, "AUTH_INVALID")
    assert await sync_to_async(footprint)() == before


@routes
async def test_a_session_token_may_not_travel_in_a_url(world: World, route: Route) -> None:
    before = await sync_to_async(footprint)()

    outcome = await call(route, world, where="url", token=world.owner.token)

    assert outcome == Outcome(401, "AUTH_INVALID")
    assert await sync_to_async(footprint)() == before


@routes
async def test_a_stream_token_is_not_a_session_token(world: World, route: Route) -> None:
    before = await sync_to_async(footprint)()

    outcome = await call(route, world, where="header", token=world.owner.stream_token)

    assert outcome == Outcome(401, "AUTH_INVALID")
    assert await sync_to_async(footprint)() == before


@pytest.mark.parametrize("route", REST_ROUTES, ids=str)
@pytest.mark.parametrize("kind", ["stream token", "session token"])
async def test_a_rest_route_takes_no_token_in_the_url(world: World, route: Route, kind: str) -> None:
    """REST calls can always send a header; a URL token (logged on its way) opens only the streaming routes."""
    before = await sync_to_async(footprint)()
    token = world.owner.stream_token if kind == "stream token" else world.owner.token

    outcome = await call(route, world, where="url", token=token)

    assert outcome == Outcome(401, "AUTH_INVALID")
    assert await sync_to_async(footprint)() == before


async def test_a_session_token_in_a_url_is_told_where_it_belongs(world: World) -> None:
    response = await AsyncClient().get(f"/api/v1/messages/{world.reply_id}", {"token": world.owner.token})

    assert response.status_code == 401
    assert "Authorization" in response.json()["message"] and "stream token" in response.json()["message"]


# --- Stream tokens are short-lived; the stream-token route renews them ------------------------------------------------


async def test_a_stream_token_expires_after_its_ttl_and_the_stream_token_route_gives_a_fresh_one_that_works(
    world: World, settings: Settings
) -> None:
    settings.BROOK_STREAM_TOKEN_TTL = 60
    issued = time.time()
    client = AsyncClient()
    bearer = {"Authorization": f"Bearer {world.owner.token}"}
    poll = f"/api/v1/messages/{world.reply_id}"

    with tokens_read_at(issued + 55):
        still_fresh = await client.get(poll, {"token": world.owner.stream_token})
    with tokens_read_at(issued + 61):
        stale = await client.get(poll, {"token": world.owner.stream_token})
        renewed = await client.post(f"{world.owner.url}/stream-token", headers=bearer)
        fresh = renewed.json()["token"]
        polled = await client.get(poll, {"token": fresh})
        sse = await client.get(f"{poll}/stream", {"token": fresh})
        await read_body(sse)
    with tokens_read_at(issued + 61 + 61):
        fresh_gone_stale = await client.get(poll, {"token": fresh})

    assert still_fresh.status_code == 200
    assert (stale.status_code, stale.json()["code"]) == (401, "AUTH_EXPIRED")
    assert "stream-token" in stale.json()["message"]
    assert renewed.status_code == 201 and fresh != world.owner.stream_token
    assert polled.status_code == 200 and polled.json()["id"] == str(world.reply_id)
    assert sse.status_code == 200
    assert (fresh_gone_stale.status_code, fresh_gone_stale.json()["code"]) == (401, "AUTH_EXPIRED")


async def test_a_fresh_stream_token_opens_the_websocket(world: World) -> None:
    renewed = await AsyncClient().post(
        f"{world.owner.url}/stream-token", headers={"Authorization": f"Bearer {world.owner.token}"}
    )
    socket = WebsocketCommunicator(router, f"/ws/v1/sessions/{world.owner.id}/?token={renewed.json()['token']}")

    connected, _ = await socket.connect(timeout=5)

    assert connected and await socket.receive_nothing(timeout=0.3)
    await socket.disconnect()


async def test_a_stream_token_cannot_renew_itself(world: World) -> None:
    """A stream token travels in URLs, so it lands in access logs; it must die with its TTL. If it could buy a fresh
    one, whoever reads the log could keep a session open for as long as the session token lives."""
    leaked = world.owner.stream_token

    response = await AsyncClient().post(f"{world.owner.url}/stream-token?{urlencode({'token': leaked})}")

    assert response.status_code == 401
    assert "token" not in response.json()


# --- Refused writes leave nothing behind ------------------------------------------------------------------------------


async def test_an_outsider_cannot_cancel_a_reply_that_is_still_queued(world: World) -> None:
    session = await sync_to_async(ChatSession.objects.select_related("tenant").get)(id=world.owner.id)
    queued = (await sync_to_async(message_submit)(session=session, content="Are you there?", delivery="poll")).reply
    url = f"/api/v1/messages/{queued.id}/cancel"
    client = AsyncClient()

    foreign = await client.post(url, headers={"Authorization": f"Bearer {world.outsider.token}"})
    neighbour = await client.post(url, headers={"Authorization": f"Bearer {world.neighbour.token}"})
    status_after_strangers = (await sync_to_async(Message.objects.get)(id=queued.id)).status
    own = await client.post(url, headers={"Authorization": f"Bearer {world.owner.token}"})

    assert (foreign.status_code, neighbour.status_code) == (404, 404)
    assert status_after_strangers == MessageStatus.QUEUED
    assert own.status_code == 200 and own.json()["status"] == MessageStatus.CANCELLED


async def test_an_outsider_cannot_post_into_a_session_over_eventsource_start_by_naming_it(world: World) -> None:
    """The outsider's own valid stream token, with the victim's session id and tenant key in the query."""
    before = await sync_to_async(Message.objects.filter(role=Role.USER).count)()
    params = {
        "tenant": world.tenant_key,
        "session_id": str(world.owner.id),
        "message_id": "hijack-1",
        "user_input": "Ignore previous instructions",
        "token": world.outsider.stream_token,
    }

    response = await AsyncClient().get("/api/v1/stream", params)

    assert (response.status_code, response.json()["code"]) == (404, "SESSION_NOT_FOUND")
    assert await sync_to_async(Message.objects.filter(role=Role.USER).count)() == before

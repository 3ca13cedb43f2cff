"""Per-tenant CORS: a widget's origin must be one its tenant lists; allowed answers echo that exact origin, never ``*``,
and never allow credentials; foreign origins are refused before anything is written (config/cors.py)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.http import HttpResponseBase
from django.test import AsyncClient
from pytest_django import Settings
from rest_framework.test import APIClient

from chat.models import ChatSession, FallbackReport, Message
from config.asgi import router
from tenants.models import Tenant
from tenants.services import tenant_update
from tests.conftest import SessionInfo
from tests.streaming.conftest import read_body

pytestmark = pytest.mark.django_db

ALLOWED = "https://shop.example.com"  # the `tenant` fixture's origin
NEIGHBOURS = "https://globex.example.com"  # `other_tenant`'s origin: known to Brook, not to `tenant`
FOREIGN = [
    "https://evil.example",
    NEIGHBOURS,
    "null",
    "http://shop.example.com",
    "https://shop.example.com.evil.example",
    "https://shop.example.com:8443",
]


def vary(response: HttpResponseBase) -> list[str]:
    return [part.strip().lower() for part in response.get("Vary", "").split(",")]


def assert_readable_by(response: HttpResponseBase, origin: str) -> None:
    """The browser on ``origin`` may read this answer, and no other page may."""
    assert response["Access-Control-Allow-Origin"] == origin
    assert "origin" in vary(response)
    assert "Access-Control-Allow-Credentials" not in response


def assert_unreadable(response: HttpResponseBase) -> None:
    assert "Access-Control-Allow-Origin" not in response
    assert "Access-Control-Allow-Credentials" not in response


def footprint() -> tuple[int, int, int]:
    return ChatSession.objects.count(), Message.objects.count(), FallbackReport.objects.count()


@pytest.fixture
def chat(api: APIClient, session: SessionInfo) -> uuid.UUID:
    """A finished reply in ``session``, for the message routes."""
    response = api.post(session.messages_url, {"content": "Hello", "mode": "batch"}, format="json", **session.auth)
    assert response.status_code == 200, response.content
    return uuid.UUID(response.json()["id"])


# --- Allowed origins --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    name: str
    method: str
    path: str  # {key}, {session} and {message} are filled in
    body: dict[str, Any] | None = None
    bearer: bool = False
    stream_token: bool = False

    def __str__(self) -> str:
        return self.name


WIDGET_CALLS = [
    Call("widget config", "GET", "/api/v1/widget/config?tenant={key}"),
    Call("session creation", "POST", "/api/v1/sessions", body={"tenant": "{key}"}),
    Call("session history", "GET", "/api/v1/sessions/{session}", bearer=True),
    Call("message poll", "GET", "/api/v1/messages/{message}", bearer=True),
    Call("message SSE", "GET", "/api/v1/messages/{message}/stream", stream_token=True),
    Call(
        "EventSource start",
        "GET",
        "/api/v1/stream?tenant={key}&session_id={session}&message_id=es-1&user_input=Hi",
        stream_token=True,
    ),
]

# Routes served by async views (streaming/transports/http.py): the middleware's async path.
ASYNC_CALLS = [call for call in WIDGET_CALLS if call.name in {"message poll", "message SSE", "EventSource start"}]


async def send(call: Call, *, tenant: Tenant, session: SessionInfo, message: uuid.UUID, origin: str) -> Any:
    path = call.path.format(key=tenant.public_key, session=session.id, message=message)
    headers = {"Origin": origin}
    if call.bearer:
        headers["Authorization"] = f"Bearer {session.token}"
    if call.stream_token:
        path += ("&" if "?" in path else "?") + f"token={session.stream_token}"
    client = AsyncClient()
    if call.method == "GET":
        return await client.get(path, headers=headers)
    body = {name: value.format(key=tenant.public_key) for name, value in (call.body or {}).items()}
    return await client.post(path, body, content_type="application/json", headers=headers)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("call", WIDGET_CALLS, ids=str)
async def test_an_allowed_origin_gets_exactly_itself_back_and_no_credentials(
    tenant: Tenant, session: SessionInfo, chat: uuid.UUID, call: Call
) -> None:
    response = await send(call, tenant=tenant, session=session, message=chat, origin=ALLOWED)
    if response.streaming:
        await read_body(response)

    assert response.status_code in {200, 201}
    assert_readable_by(response, ALLOWED)
    assert response["Access-Control-Allow-Origin"] != "*"
    assert "Retry-After" in response["Access-Control-Expose-Headers"]


def test_the_sync_stack_answers_an_allowed_origin_the_same_way(api: APIClient, tenant: Tenant) -> None:
    response = api.post("/api/v1/sessions", {"tenant": tenant.public_key}, format="json", HTTP_ORIGIN=ALLOWED)

    assert response.status_code == 201
    assert_readable_by(response, ALLOWED)


# --- Foreign origins --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("origin", FOREIGN)
def test_a_foreign_origin_cannot_start_a_session(
    api: APIClient, tenant: Tenant, other_tenant: Tenant, origin: str
) -> None:
    response = api.post("/api/v1/sessions", {"tenant": tenant.public_key}, format="json", HTTP_ORIGIN=origin)

    assert response.status_code == 403
    assert response.json()["code"] == "ORIGIN_NOT_ALLOWED"
    assert_unreadable(response)
    assert ChatSession.objects.count() == 0


@pytest.mark.parametrize("origin", ["https://evil.example", NEIGHBOURS])
def test_a_foreign_origin_cannot_read_the_widget_config(
    api: APIClient, tenant: Tenant, other_tenant: Tenant, origin: str
) -> None:
    response = api.get("/api/v1/widget/config", {"tenant": tenant.public_key}, HTTP_ORIGIN=origin)

    assert (response.status_code, response.json()["code"]) == (403, "ORIGIN_NOT_ALLOWED")
    assert tenant.name not in response.content.decode()
    assert_unreadable(response)


@pytest.mark.parametrize("origin", ["https://evil.example", NEIGHBOURS])
@pytest.mark.parametrize(
    ("path", "body", "token_in_url"),
    [
        ("{session}", None, False),
        ("{session}/messages", {"content": "Hello", "mode": "batch"}, False),
        ("{session}/messages", {"content": "Hello", "mode": "batch"}, True),
        ("{session}/stream-token", {}, False),
        ("{session}/fallback", {"reason": "timeout", "from_delivery": "stream", "to_delivery": "poll"}, False),
    ],
)
def test_a_foreign_origin_with_a_valid_token_is_refused_and_nothing_is_written(
    api: APIClient,
    session: SessionInfo,
    other_tenant: Tenant,
    origin: str,
    path: str,
    body: dict[str, Any] | None,
    token_in_url: bool,
) -> None:
    url = f"/api/v1/sessions/{path.format(session=session.id)}"
    auth: dict[str, Any] = {"HTTP_ORIGIN": origin}
    if token_in_url:
        url += f"?token={session.stream_token}"
    else:
        auth["HTTP_AUTHORIZATION"] = f"Bearer {session.token}"
    before = footprint()

    response = api.get(url, **auth) if body is None else api.post(url, body, format="json", **auth)

    assert (response.status_code, response.json()["code"]) == (403, "ORIGIN_NOT_ALLOWED")
    assert_unreadable(response)
    assert "token" not in response.json()
    assert footprint() == before


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("origin", ["https://evil.example", NEIGHBOURS])
@pytest.mark.parametrize("call", ASYNC_CALLS, ids=str)
async def test_a_foreign_origin_is_refused_on_the_async_routes_too(
    tenant: Tenant, other_tenant: Tenant, session: SessionInfo, chat: uuid.UUID, call: Call, origin: str
) -> None:
    before = await sync_to_async(footprint)()

    response = await send(call, tenant=tenant, session=session, message=chat, origin=origin)

    assert (response.status_code, response.json()["code"]) == (403, "ORIGIN_NOT_ALLOWED")
    assert_unreadable(response)
    assert await sync_to_async(footprint)() == before


@pytest.mark.parametrize(
    "smuggle",
    ["the neighbour's key in the query", "the neighbour's stream token in the query", "a body too long to inspect"],
)
def test_a_neighbours_origin_cannot_smuggle_a_session_of_this_tenant(
    api: APIClient,
    tenant: Tenant,
    other_tenant: Tenant,
    make_session: Callable[..., SessionInfo],
    smuggle: str,
) -> None:
    """The origin is judged against the tenant the request acts for, however the request is dressed up."""
    body: dict[str, Any] = {"tenant": tenant.public_key}
    url = "/api/v1/sessions"
    if smuggle == "the neighbour's key in the query":
        url += f"?tenant={other_tenant.public_key}"
    elif smuggle == "the neighbour's stream token in the query":
        url += f"?token={make_session(other_tenant).stream_token}"
    else:
        body["padding"] = "x" * 20_000
    before = ChatSession.objects.filter(tenant=tenant).count()

    response = api.post(url, body, format="json", HTTP_ORIGIN=NEIGHBOURS)

    assert response.status_code == 403
    assert ChatSession.objects.filter(tenant=tenant).count() == before


def test_a_body_too_large_to_inspect_creates_no_session_from_a_neighbours_origin(
    api: APIClient, tenant: Tenant, other_tenant: Tenant, settings: Settings
) -> None:
    body = {"tenant": tenant.public_key, "padding": "x" * settings.DATA_UPLOAD_MAX_MEMORY_SIZE}

    response = api.post("/api/v1/sessions", body, format="json", HTTP_ORIGIN=NEIGHBOURS)

    assert (response.status_code, response.json()["code"]) == (413, "PAYLOAD_TOO_LARGE")
    assert ChatSession.objects.count() == 0


def test_a_neighbours_stream_token_does_not_open_this_tenants_widget_config_to_its_origin(
    api: APIClient, tenant: Tenant, other_tenant: Tenant, make_session: Callable[..., SessionInfo]
) -> None:
    neighbours_token = make_session(other_tenant).stream_token

    response = api.get(
        "/api/v1/widget/config", {"tenant": tenant.public_key, "token": neighbours_token}, HTTP_ORIGIN=NEIGHBOURS
    )

    assert response.status_code == 403
    assert_unreadable(response)


# --- Preflights -------------------------------------------------------------------------------------------------------


def preflight(api: APIClient, path: str, origin: str) -> Any:
    return api.options(
        path,
        HTTP_ORIGIN=origin,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
        HTTP_ACCESS_CONTROL_REQUEST_HEADERS="authorization, content-type",
    )


@pytest.mark.parametrize("path", ["/api/v1/sessions", "/api/v1/sessions/{id}/messages", "/api/v1/messages/{id}/stream"])
def test_a_preflight_from_an_allowed_origin_is_answered(api: APIClient, tenant: Tenant, path: str) -> None:
    response = preflight(api, path.format(id=uuid.uuid4()), ALLOWED)

    assert response.status_code == 204
    assert_readable_by(response, ALLOWED)
    assert {"GET", "POST"} <= {m.strip() for m in response["Access-Control-Allow-Methods"].split(",")}
    allowed_headers = {h.strip().lower() for h in response["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type", "last-event-id"} <= allowed_headers
    assert int(response["Access-Control-Max-Age"]) > 0


@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://shop.example.com"])
def test_a_preflight_from_an_unknown_origin_is_refused(api: APIClient, tenant: Tenant, origin: str) -> None:
    response = preflight(api, "/api/v1/sessions", origin)

    assert response.status_code >= 400
    assert_unreadable(response)
    assert "Access-Control-Allow-Methods" not in response


def test_a_preflight_unlocks_nothing_for_another_tenants_origin(
    api: APIClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    """A preflight carries no tenant, so any origin some tenant lists passes it; the request itself is judged."""
    passed = preflight(api, "/api/v1/sessions", NEIGHBOURS)
    request = api.post("/api/v1/sessions", {"tenant": tenant.public_key}, format="json", HTTP_ORIGIN=NEIGHBOURS)

    assert passed.status_code == 204
    assert (request.status_code, request.json()["code"]) == (403, "ORIGIN_NOT_ALLOWED")


@pytest.mark.django_db(transaction=True)  # the cached union of origins is forgotten on commit
def test_a_preflight_stops_being_answered_once_no_tenant_lists_the_origin(api: APIClient, tenant: Tenant) -> None:
    assert preflight(api, "/api/v1/sessions", ALLOWED).status_code == 204

    tenant_update(tenant=tenant, allowed_origins=["https://new-shop.example.com"])

    assert preflight(api, "/api/v1/sessions", ALLOWED).status_code == 403
    assert preflight(api, "/api/v1/sessions", "https://new-shop.example.com").status_code == 204


# --- Requests without a foreign origin --------------------------------------------------------------------------------


def test_a_request_without_an_origin_is_left_to_the_token_checks(api: APIClient, session: SessionInfo) -> None:
    created = api.post("/api/v1/sessions", {"tenant": Tenant.objects.get().public_key}, format="json")
    history = api.get(session.url, **session.auth)

    assert (created.status_code, history.status_code) == (201, 200)
    assert "Access-Control-Allow-Origin" not in created and "Access-Control-Allow-Origin" not in history
    assert "origin" in vary(created) and "origin" in vary(history)  # a shared cache must still key on Origin


def test_a_same_origin_request_from_brooks_own_pages_is_allowed(api: APIClient, tenant: Tenant) -> None:
    response = api.post(
        "/api/v1/sessions", {"tenant": tenant.public_key}, format="json", HTTP_ORIGIN="http://testserver"
    )

    assert response.status_code == 201
    assert response.get("Access-Control-Allow-Origin") in {None, "http://testserver"}
    assert ChatSession.objects.count() == 1


def test_a_401_for_a_bad_token_from_a_known_origin_is_readable(api: APIClient, session: SessionInfo) -> None:
    response = api.get(session.url, HTTP_AUTHORIZATION="Bearer not-a-token", HTTP_ORIGIN=ALLOWED)

    assert (response.status_code, response.json()["code"]) == (401, "AUTH_INVALID")
    assert_readable_by(response, ALLOWED)


def test_a_401_for_a_bad_token_from_an_unknown_origin_is_not_readable(api: APIClient, session: SessionInfo) -> None:
    response = api.get(session.url, HTTP_AUTHORIZATION="Bearer not-a-token", HTTP_ORIGIN="https://evil.example")

    assert response.status_code == 401
    assert_unreadable(response)


def test_a_429_from_an_allowed_origin_is_readable_with_its_retry_after(api: APIClient, tenant: Tenant) -> None:
    tenant_update(tenant=tenant, sessions_per_ip_per_minute=1)
    api.post("/api/v1/sessions", {"tenant": tenant.public_key}, format="json", HTTP_ORIGIN=ALLOWED)

    response = api.post("/api/v1/sessions", {"tenant": tenant.public_key}, format="json", HTTP_ORIGIN=ALLOWED)

    assert response.status_code == 429
    assert_readable_by(response, ALLOWED)
    assert "retry-after" in response["Access-Control-Expose-Headers"].lower()
    assert int(response["Retry-After"]) > 0


def test_pages_outside_the_api_are_not_touched(api: APIClient, tenant: Tenant) -> None:
    response = api.get("/healthz", HTTP_ORIGIN="https://evil.example")

    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response


# --- WebSocket handshakes ---------------------------------------------------------------------------------------------


async def handshake(session: SessionInfo, origin: str | None) -> tuple[WebsocketCommunicator, dict[str, Any] | None]:
    """Connect from ``origin``; the error frame if the socket is refused, else None (and the socket stays open)."""
    headers = [(b"host", b"testserver")] + ([] if origin is None else [(b"origin", origin.encode())])
    socket = WebsocketCommunicator(router, f"/ws/v1/sessions/{session.id}/?token={session.stream_token}", headers)
    connected, _ = await socket.connect(timeout=5)
    assert connected
    if await socket.receive_nothing(timeout=0.3):
        return socket, None
    return socket, await socket.receive_json_from(timeout=5)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("origin", ["https://evil.example", NEIGHBOURS, "null"])
async def test_a_websocket_from_a_foreign_origin_is_closed_with_4403(
    session: SessionInfo, other_tenant: Tenant, origin: str
) -> None:
    socket, error = await handshake(session, origin)
    closed = await socket.receive_output(timeout=5)

    assert error is not None and error["code"] == "ORIGIN_NOT_ALLOWED"
    assert closed == {"type": "websocket.close", "code": 4403}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("origin", [ALLOWED, "http://testserver", None])
async def test_a_websocket_from_an_allowed_origin_same_origin_or_no_browser_connects(
    session: SessionInfo, origin: str | None
) -> None:
    socket, error = await handshake(session, origin)

    assert error is None
    await socket.disconnect()


def test_a_preflight_is_answered_from_the_database_while_the_cache_is_away(
    api: APIClient, tenant: Tenant, cache_away: None
) -> None:
    response = preflight(api, "/api/v1/sessions", ALLOWED)

    assert response.status_code == 204
    assert_readable_by(response, ALLOWED)

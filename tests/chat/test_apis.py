"""The session and message endpoints: happy paths, bad input, outsiders, idempotency."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.db import OperationalError, connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from chat.models import ChatSession, Message, MessageStatus, Role, StepKind
from chat.tokens import session_token_issue
from streaming.agents.base import Agent, Emitter, Turn
from tenants.models import Tenant
from tests.conftest import Agents, SessionInfo, Silent

pytestmark = pytest.mark.django_db

QUESTION = "How do I reset my password for the billing portal?"


def send(api: APIClient, session: SessionInfo, content: Any = QUESTION, **extra: Any) -> Any:
    return api.post(session.messages_url, {"content": content, **extra}, format="json", **session.auth)


# --- POST /api/v1/sessions ------------------------------------------------------------------------------------------


def test_it_creates_a_session_with_a_token(api: APIClient, tenant: Tenant) -> None:
    response = api.post("/api/v1/sessions", {"tenant": tenant.public_key, "visitor_id": "v-1"}, format="json")

    assert response.status_code == 201
    body = response.json()
    assert set(body) >= {"id", "token", "token_expires_at", "visitor_id", "created_at"}
    session = ChatSession.objects.get(id=body["id"])
    assert session.tenant == tenant
    assert session.visitor_id == "v-1"
    assert str(session.id) not in body["token"]  # opaque: ids are not spelled out in the token


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({}, 400, "INVALID_INPUT"),
        ({"tenant": ""}, 400, "INVALID_INPUT"),
        ({"tenant": "x" * 65}, 400, "INVALID_INPUT"),
        ({"tenant": "no-such-key"}, 404, "TENANT_NOT_FOUND"),
        ({"tenant": ["a list"]}, 400, "INVALID_INPUT"),
        ([1, 2, 3], 400, "INVALID_INPUT"),
    ],
)
def test_session_creation_rejects_bad_input(
    api: APIClient, tenant: Tenant, payload: Any, status: int, code: str
) -> None:
    response = api.post("/api/v1/sessions", payload, format="json")

    assert response.status_code == status
    assert response.json()["code"] == code
    assert response.json()["message"]
    assert ChatSession.objects.count() == 0


def test_session_creation_rejects_malformed_json(api: APIClient, tenant: Tenant) -> None:
    response = api.post("/api/v1/sessions", "{not json", content_type="application/json")

    assert response.status_code == 400
    assert response.json() == {"code": "INVALID_JSON", "message": "The request body is not valid JSON."}


def test_session_creation_rejects_form_bodies(api: APIClient, tenant: Tenant) -> None:
    response = api.post("/api/v1/sessions", {"tenant": tenant.public_key})  # multipart

    assert response.status_code == 415
    assert response.json()["code"] == "UNSUPPORTED_MEDIA_TYPE"


def test_an_inactive_tenant_cannot_start_sessions(api: APIClient, tenant: Tenant) -> None:
    Tenant.objects.filter(pk=tenant.pk).update(is_active=False)

    response = api.post("/api/v1/sessions", {"tenant": tenant.public_key}, format="json")

    assert response.status_code == 404
    assert response.json()["code"] == "TENANT_NOT_FOUND"


# --- GET /api/v1/sessions/{id} --------------------------------------------------------------------------------------


def test_it_returns_the_history_with_thought_steps(api: APIClient, session: SessionInfo) -> None:
    send(api, session, "Hello there")
    send(api, session, QUESTION)

    response = api.get(session.url, **session.auth)

    assert response.status_code == 200
    messages = response.json()["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[2]["content"] == QUESTION
    assert messages[3]["reply_to"] == messages[2]["id"]
    assert [step["index"] for step in messages[3]["steps"]] == [0, 1, 2, 3, 4]
    assert messages[0]["steps"] == []


def test_history_takes_a_fixed_number_of_queries(api: APIClient, session: SessionInfo) -> None:
    for n in range(3):
        send(api, session, f"Message number {n}?")

    with CaptureQueriesContext(connection) as queries:
        response = api.get(session.url, **session.auth)

    assert response.status_code == 200
    assert len(response.json()["messages"]) == 6
    assert len(queries) == 3  # session (with tenant), messages, steps


@pytest.mark.parametrize("token", ["stream_token", "token"])
def test_rest_routes_take_no_token_in_the_url(api: APIClient, session: SessionInfo, token: str) -> None:
    response = api.get(f"{session.url}?token={getattr(session, token)}")

    assert response.status_code == 401
    assert response.json()["code"] == "AUTH_INVALID"


def test_an_outsider_token_gets_404(
    api: APIClient, session: SessionInfo, other_tenant: Tenant, make_session: Callable[..., SessionInfo]
) -> None:
    outsider = make_session(other_tenant)

    response = api.get(session.url, **outsider.auth)

    assert response.status_code == 404
    assert response.json()["code"] == "SESSION_NOT_FOUND"


def test_a_token_for_another_session_of_the_same_tenant_gets_404(
    api: APIClient, tenant: Tenant, session: SessionInfo, make_session: Callable[..., SessionInfo]
) -> None:
    neighbour = make_session(tenant)

    response = api.get(session.url, **neighbour.auth)

    assert response.status_code == 404


def test_a_forged_token_naming_the_session_gets_401(api: APIClient, session: SessionInfo, tenant: Tenant) -> None:
    forged = session.token[:-4] + ("AAAA" if not session.token.endswith("AAAA") else "BBBB")

    response = api.get(session.url, HTTP_AUTHORIZATION=f"Bearer {forged}")

    assert response.status_code == 401
    assert response.json()["code"] == "AUTH_INVALID"


def test_an_expired_token_gets_401(api: APIClient, session: SessionInfo, settings: Any) -> None:
    with mock.patch("django.core.signing.time.time", return_value=10**10):
        response = api.get(session.url, **session.auth)

    assert response.status_code == 401
    assert response.json()["code"] == "AUTH_EXPIRED"


@pytest.mark.parametrize("header", [None, "Basic dXNlcjpwdw==", "Bearer", "Bearer   "])
def test_a_missing_or_malformed_authorization_gets_401(
    api: APIClient, session: SessionInfo, header: str | None
) -> None:
    extra: dict[str, Any] = {} if header is None else {"HTTP_AUTHORIZATION": header}

    response = api.get(session.url, **extra)

    assert response.status_code == 401
    assert response.json()["code"] in {"AUTH_REQUIRED", "AUTH_INVALID"}
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("bad_id", ["not-a-uuid", "1", "00000000-0000-0000-0000-000000000000"])
def test_bad_or_unknown_session_ids_get_404(api: APIClient, session: SessionInfo, bad_id: str) -> None:
    response = api.get(f"/api/v1/sessions/{bad_id}", **session.auth)

    assert response.status_code == 404
    assert response.json()["code"] == "SESSION_NOT_FOUND"


def test_a_session_of_a_deactivated_tenant_is_gone(api: APIClient, session: SessionInfo, tenant: Tenant) -> None:
    Tenant.objects.filter(pk=tenant.pk).update(is_active=False)

    assert api.get(session.url, **session.auth).status_code == 404


def test_a_token_signed_for_the_wrong_tenant_finds_nothing(
    api: APIClient, session: SessionInfo, other_tenant: Tenant
) -> None:
    token, _ = session_token_issue(tenant_id=other_tenant.pk, session_id=session.id)

    assert api.get(session.url, HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 404


# --- POST /api/v1/sessions/{id}/messages (batch) --------------------------------------------------------------------


def test_a_batch_message_returns_the_finished_reply(api: APIClient, session: SessionInfo) -> None:
    response = send(api, session, client_message_id="m-1")

    assert response.status_code == 200
    reply = response.json()
    assert reply["role"] == "assistant"
    assert reply["status"] == "completed"
    assert "reset" in reply["content"]
    assert reply["reasoning"]
    assert reply["error"] is None
    assert [s["kind"] for s in reply["steps"]] == ["thinking", "decision", "tool_call", "reasoning", "result"]
    assert all(s["status"] == "completed" and s["duration_ms"] is not None for s in reply["steps"])
    assert reply["model"] == "brook-demo-1"
    assert reply["usage"]["completion_tokens"] > 0
    assert reply["time_to_first_token_ms"] is not None
    assert reply["duration_ms"] >= reply["time_to_first_token_ms"]
    stored = Message.objects.get(id=reply["id"])
    assert stored.content == reply["content"]
    assert stored.reply_to is not None and stored.reply_to.client_message_id == "m-1"


def test_the_same_client_message_id_returns_the_same_reply_without_a_second_run(
    api: APIClient, session: SessionInfo, agents: Agents, tenant: Tenant
) -> None:
    first = send(api, session, client_message_id="retry-me").json()

    unused = agents.use(tenant, Silent())
    second = send(api, session, client_message_id="retry-me")

    assert second.status_code == 200
    assert second.json() == first
    assert unused.built == 0
    assert Message.objects.filter(session_id=session.id).count() == 2


def test_a_client_message_id_reused_for_other_content_is_a_conflict(api: APIClient, session: SessionInfo) -> None:
    send(api, session, "first text", client_message_id="k")

    response = send(api, session, "different text", client_message_id="k")

    assert response.status_code == 409
    assert response.json()["code"] == "IDEMPOTENCY_CONFLICT"
    assert Message.objects.filter(session_id=session.id).count() == 2


def test_client_message_ids_are_scoped_to_their_session(
    api: APIClient, tenant: Tenant, session: SessionInfo, make_session: Callable[..., SessionInfo]
) -> None:
    other = make_session(tenant)
    send(api, session, "same", client_message_id="k")

    response = send(api, other, "same", client_message_id="k")

    assert response.status_code == 200
    assert Message.objects.filter(session_id=other.id, role=Role.ASSISTANT).count() == 1


def test_messages_without_a_client_id_each_get_a_reply(api: APIClient, session: SessionInfo) -> None:
    send(api, session, "same")
    send(api, session, "same")

    assert Message.objects.filter(session_id=session.id, role=Role.ASSISTANT).count() == 2


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({}, "INVALID_INPUT"),
        ({"content": ""}, "INVALID_INPUT"),
        ({"content": "   \n"}, "INVALID_INPUT"),
        ({"content": None}, "INVALID_INPUT"),
        ({"content": {"nested": 1}}, "INVALID_INPUT"),
        ({"content": "hi", "mode": "telepathy"}, "INVALID_INPUT"),
        ({"content": "hi", "client_message_id": "x" * 129}, "INVALID_INPUT"),
        ({"content": "x" * 8001}, "MESSAGE_TOO_LONG"),
    ],
)
def test_bad_messages_are_rejected_and_nothing_is_stored(
    api: APIClient, session: SessionInfo, payload: dict[str, Any], code: str
) -> None:
    response = api.post(session.messages_url, payload, format="json", **session.auth)

    assert response.status_code == 400
    assert response.json()["code"] == code
    assert Message.objects.filter(session_id=session.id).count() == 0


def test_the_length_limit_is_the_tenants(api: APIClient, tenant: Tenant, session: SessionInfo) -> None:
    Tenant.objects.filter(pk=tenant.pk).update(max_message_length=10)

    assert send(api, session, "x" * 10).status_code == 200
    too_long = send(api, session, "x" * 11)

    assert too_long.status_code == 400
    assert too_long.json()["details"] == {"max_length": 10, "length": 11}


def test_a_malformed_message_body_is_a_400(api: APIClient, session: SessionInfo) -> None:
    response = api.post(session.messages_url, "{", content_type="application/json", **session.auth)

    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_JSON"


def test_an_outsider_cannot_post_into_a_session(
    api: APIClient, session: SessionInfo, other_tenant: Tenant, make_session: Callable[..., SessionInfo]
) -> None:
    outsider = make_session(other_tenant)

    response = api.post(session.messages_url, {"content": "hi"}, format="json", **outsider.auth)

    assert response.status_code == 404
    assert Message.objects.filter(session_id=session.id).count() == 0


def test_posting_without_a_token_is_a_401(api: APIClient, session: SessionInfo) -> None:
    response = api.post(session.messages_url, {"content": "hi"}, format="json")

    assert response.status_code == 401
    assert response.json()["code"] == "AUTH_REQUIRED"


def test_the_agent_sees_the_earlier_turns(api: APIClient, session: SessionInfo, agents: Agents, tenant: Tenant) -> None:
    seen: list[Sequence[Turn]] = []

    class Recording(Agent):
        name = "recording"

        async def run(self, conversation: Sequence[Turn], emit: Emitter) -> None:
            seen.append(list(conversation))
            await emit.text_delta("ok")

    send(api, session, "first")
    agents.use(tenant, Recording())
    send(api, session, "second")

    assert [(t.role, t.content) for t in seen[0]] == [
        ("user", "first"),
        ("assistant", Message.objects.filter(role=Role.ASSISTANT).order_by("created_at")[0].content),
        ("user", "second"),
    ]


class Failing(Agent):
    name = "failing"

    async def run(self, conversation: Sequence[Turn], emit: Emitter) -> None:
        async with emit.step(kind=StepKind.THINKING, title="Working"):
            await emit.text_delta("Partial ")
            await emit.text_delta("answer")
            raise RuntimeError("secret upstream detail sk-123")


def test_an_agent_failure_fails_the_reply_and_keeps_the_partial_answer(
    api: APIClient, session: SessionInfo, agents: Agents, tenant: Tenant
) -> None:
    agents.use(tenant, Failing())
    response = send(api, session)

    assert response.status_code == 200
    reply = response.json()
    assert reply["status"] == "failed"
    assert reply["content"] == "Partial answer"
    assert reply["error"]["code"] == "AGENT_ERROR"
    assert "sk-123" not in response.content.decode()
    assert reply["steps"][0]["status"] == "failed"


def test_a_reply_over_the_tenants_time_limit_fails_with_stream_004(
    api: APIClient, tenant: Tenant, session: SessionInfo, agents: Agents
) -> None:
    import asyncio

    class Slow(Agent):
        name = "slow"

        async def run(self, conversation: Sequence[Turn], emit: Emitter) -> None:
            await emit.text_delta("Started")
            await emit.tool_call(call_id="c1", name="wait", arguments={})
            await asyncio.sleep(30)

    Tenant.objects.filter(pk=tenant.pk).update(max_stream_seconds=1)
    agents.use(tenant, Slow())
    reply = send(api, session).json()

    assert reply["status"] == "failed"
    assert reply["error"]["code"] == "STREAM_004"
    assert reply["content"] == "Started"
    assert reply["steps"][0]["status"] == "failed"
    stored = Message.objects.get(id=reply["id"])
    assert stored.status == MessageStatus.FAILED
    assert stored.finished_at is not None
    assert stored.finished_at - stored.created_at < timedelta(seconds=10)


def test_a_database_outage_is_a_503_with_retry_after_not_a_500(api: APIClient, tenant: Tenant) -> None:
    with mock.patch("chat.services.session_create", side_effect=OperationalError("connection refused")):
        response = api.post("/api/v1/sessions", {"tenant": tenant.public_key}, format="json")

    assert response.status_code == 503
    assert response.json()["code"] == "DATABASE_UNAVAILABLE"
    assert response["Retry-After"] == "5"
    assert "connection refused" not in response.content.decode()

"""The http agent kind: Brook posts the signed conversation to the tenant's own agent and relays what it streams
back (docs/agents.md, "An HTTP agent"). The agent here is a plain standard-library HTTP server that checks Brook's
signature with the Standard Webhooks library, as a tenant's agent would."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core.exceptions import ValidationError
from django.test import AsyncClient
from pytest_django import Settings
from rest_framework.test import APIClient
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from chat.models import Message
from tenants.models import Agent, Tenant
from tenants.services import tenant_update
from tests.conftest import SessionInfo, eventually

pytestmark = [pytest.mark.django_db(transaction=True)]

ANSWER = [
    {"type": "step.started", "data": {"index": 0, "kind": "thinking", "title": "Looking it up"}},
    {"type": "tool.call", "data": {"call_id": "t1", "name": "lookup", "arguments": {"q": "parcel"}}},
    {"type": "tool.result", "data": {"call_id": "t1", "result": {"where": "Lyon"}}},
    {"type": "step.completed", "data": {"index": 0}},
    {"type": "reasoning.delta", "data": {"delta": "It is in Lyon."}},
    {"type": "text.delta", "data": {"delta": "Your parcel "}},
    {"type": "text.delta", "data": {"delta": "is in Lyon."}},
    {"type": "usage", "data": {"model": "their-agent", "prompt_tokens": 7, "completion_tokens": 4}},
    {"type": "message.completed"},
]


class TheirAgent:
    """The tenant's agent: one route per behaviour; it records what it was sent and whether Brook hung up."""

    def __init__(self) -> None:
        self.secret = ""
        self.received: list[Any] = []
        self.verified: list[bool] = []
        self.hung_up = threading.Event()
        self.first_sent = threading.Event()
        agent = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"])).decode()
                try:
                    agent.received.append(Webhook(agent.secret).verify(body, dict(self.headers.items())))
                    agent.verified.append(True)
                except WebhookVerificationError:
                    agent.verified.append(False)
                agent.answer(self, self.path)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, handler: BaseHTTPRequestHandler, path: str) -> None:
        if path == "/error":
            handler.send_response(500)
            handler.end_headers()
            return
        kind = {"/sse": "text/event-stream", "/html": "text/html"}.get(path, "application/x-ndjson")
        handler.send_response(200)
        handler.send_header("Content-Type", kind)
        handler.end_headers()
        scripts: dict[str, list[Any]] = {
            "/failed": [ANSWER[5], {"type": "message.failed", "data": {"message": "Our tracking service is down."}}],
            "/no-end": ANSWER[5:7],
            "/garbage": ["this is not json"],
            "/unknown-step": [{"type": "step.completed", "data": {"index": 9}}],
        }
        events = scripts.get(path, ANSWER)
        if path == "/silent":
            time.sleep(3)
            return
        for n, event in enumerate(events):
            text = event if isinstance(event, str) else json.dumps(event)
            handler.wfile.write((f"data: {text}\n\n" if kind == "text/event-stream" else f"{text}\n").encode())
            handler.wfile.flush()
            if path == "/slow" and n == 5:  # the first words of the answer, then a long think
                self.first_sent.set()
                try:
                    for _ in range(200):
                        handler.wfile.write(b"\n")  # blank lines: nothing to read, but a closed socket shows
                        handler.wfile.flush()
                        time.sleep(0.05)
                except OSError:
                    self.hung_up.set()
                return

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def their_agent(tenant: Tenant) -> Iterator[TheirAgent]:
    agent = TheirAgent()
    agent.secret = tenant.agent_signing_secret
    yield agent
    agent.close()


def use(tenant: Tenant, url: str) -> None:
    tenant_update(tenant=tenant, agent=Agent.HTTP, agent_url=url)


def ask(api: APIClient, session: SessionInfo) -> dict[str, Any]:
    response = api.post(
        session.messages_url, {"content": "Where is my parcel?", "mode": "batch"}, format="json", **session.auth
    )
    assert response.status_code == 200, response.content
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize("path", ["/ndjson", "/sse"])
def test_their_agents_answer_is_relayed_as_brooks_own(
    api: APIClient, session: SessionInfo, tenant: Tenant, their_agent: TheirAgent, path: str
) -> None:
    use(tenant, their_agent.url(path))

    reply = ask(api, session)

    assert their_agent.verified == [True]
    assert their_agent.received == [
        {"message": "Where is my parcel?", "conversation": [{"role": "user", "content": "Where is my parcel?"}]}
    ]
    assert (reply["status"], reply["content"], reply["reasoning"]) == (
        "completed",
        "Your parcel is in Lyon.",
        "It is in Lyon.",
    )
    assert [(s["kind"], s["status"]) for s in reply["steps"]] == [("thinking", "completed"), ("tool_call", "completed")]
    assert reply["steps"][1]["metadata"]["result"] == {"where": "Lyon"}
    assert (reply["model"], reply["usage"]["prompt_tokens"]) == ("their-agent", 7)


def test_a_signature_made_with_another_secret_does_not_verify(
    api: APIClient, session: SessionInfo, tenant: Tenant, their_agent: TheirAgent
) -> None:
    their_agent.secret = "whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB"  # not the tenant's
    use(tenant, their_agent.url("/ndjson"))

    ask(api, session)

    assert their_agent.verified == [False]


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/error", "AGENT_BAD_RESPONSE"),
        ("/html", "AGENT_BAD_RESPONSE"),
        ("/garbage", "AGENT_BAD_RESPONSE"),
        ("/no-end", "AGENT_BAD_RESPONSE"),
        ("/unknown-step", "AGENT_BAD_RESPONSE"),
        ("/failed", "AGENT_ERROR"),
    ],
)
def test_a_failing_agent_fails_the_reply_with_a_stable_code_and_keeps_what_came(
    api: APIClient, session: SessionInfo, tenant: Tenant, their_agent: TheirAgent, path: str, code: str
) -> None:
    use(tenant, their_agent.url(path))

    reply = ask(api, session)

    assert (reply["status"], reply["error"]["code"]) == ("failed", code)
    if path in {"/failed", "/no-end"}:
        assert reply["content"].startswith("Your parcel ")
    if path == "/failed":
        assert reply["error"]["message"] == "Our tracking service is down."


def test_an_agent_that_cannot_be_reached_or_stays_silent_fails_the_reply(
    api: APIClient, session: SessionInfo, tenant: Tenant, their_agent: TheirAgent, settings: Settings
) -> None:
    settings.BROOK_AGENT_FIRST_EVENT_TIMEOUT = 0.5
    use(tenant, "http://127.0.0.1:9/nobody")  # the discard port: nothing listens
    unreachable = ask(api, session)
    use(tenant, their_agent.url("/silent"))
    silent = ask(api, session)

    assert unreachable["error"]["code"] == "AGENT_UNREACHABLE"
    assert silent["error"]["code"] == "AGENT_TIMEOUT"


async def test_stop_hangs_up_on_their_agent(session: SessionInfo, tenant: Tenant, their_agent: TheirAgent) -> None:
    await sync_to_async(use)(tenant, their_agent.url("/slow"))
    client = AsyncClient()
    auth = {"Authorization": f"Bearer {session.token}"}
    sent = await client.post(
        session.messages_url, {"content": "Where?", "mode": "poll"}, content_type="application/json", headers=auth
    )
    reply_id = sent.json()["id"]

    async def first_words() -> bool:
        return their_agent.first_sent.is_set()

    await eventually(first_words, "their agent's first words")
    await client.post(f"/api/v1/messages/{reply_id}/cancel", headers=auth)

    async def hung_up() -> bool:
        return their_agent.hung_up.is_set()

    await eventually(hung_up, "Brook closing the connection to their agent")

    async def cancelled() -> bool:
        return await sync_to_async(lambda: Message.objects.get(id=reply_id).status)() == "cancelled"

    await eventually(cancelled, "the reply ending as cancelled")


def test_the_http_agent_needs_a_url(tenant: Tenant) -> None:
    with pytest.raises(ValidationError, match="URL"):
        tenant_update(tenant=tenant, agent=Agent.HTTP)

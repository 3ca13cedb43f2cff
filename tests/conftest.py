"""Fixtures shared by every test: tenants, an API client, sessions, a demo agent with no pauses, live servers."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission, User
from django.core.cache import cache
from django.db import connection
from django.http.response import HttpResponseBase
from django.test import Client
from django.utils import timezone
from pytest_django import Settings
from rest_framework.test import APIClient

from chat.models import ChatSession, FallbackReason, FallbackReport, Message, Role, StepKind, ThoughtStep
from core.limits import _slots_for
from streaming.agents.base import Agent
from streaming.agents.registry import registered
from tenants.models import Tenant, TenantMembership
from tenants.services import tenant_create


@pytest.fixture(autouse=True)
def fast_demo_agent(settings: Settings) -> None:
    """The demo agent runs without its model-like pauses in tests."""
    settings.BROOK_DEMO_TOKENS_PER_SECOND = 0
    settings.BROOK_DEMO_STEP_SECONDS = 0


T = TypeVar("T")


@dataclass
class GivenAgent:
    """An agent a test gave a tenant; ``built`` counts the replies it was asked to answer."""

    agent: Agent
    built: int = 0


class Agents:
    """Gives tenants scripted agents through Brook's agent registry (``streaming.agents.registry``), not by patching."""

    def __init__(self, stack: ExitStack) -> None:
        self._stack = stack

    def use(self, tenant: Tenant, agent: Agent) -> GivenAgent:
        """From now on ``tenant``'s replies are answered by ``agent`` (the same object for every reply)."""
        entry = GivenAgent(agent)
        name = f"test-{uuid.uuid4().hex[:12]}"

        def build(_tenant: Tenant) -> Agent:
            entry.built += 1
            return entry.agent

        self._stack.enter_context(registered(name, build))
        Tenant.objects.filter(pk=tenant.pk).update(agent=name)
        tenant.agent = name
        return entry


class Silent(Agent):
    """An agent that answers nothing: for tests that check an agent is never asked."""

    name = "silent"

    async def run(self, conversation: Any, emit: Any) -> None:
        return None


@pytest.fixture
def agents() -> Iterator[Agents]:
    with ExitStack() as stack:
        yield Agents(stack)


@pytest.fixture(autouse=True)
def database_threads(request: pytest.FixtureRequest, settings: Settings) -> None:
    """Database calls from async code run on Brook's shared threads (core/db_bridge.py) in transactional tests, as in
    production. A test whose data sits in its own uncommitted transaction runs them on its thread instead: another
    thread's connection would not see that data."""
    marker = request.node.get_closest_marker("django_db")
    transactional = "transactional_db" in request.fixturenames or (
        marker is not None and marker.kwargs.get("transaction", False)
    )
    if not transactional:
        settings.BROOK_DB_THREADS = 0


@pytest.fixture(autouse=True)
def fresh_limits() -> None:
    """Each test starts with no rate counted and no stream open: the cache (Redis in CI) and the stream slots."""
    cache.clear()
    _slots_for.cache_clear()


@pytest.fixture
def cache_away(settings: Settings) -> None:
    """Django's cache points at a Redis that nobody listens on: every cache call fails, as in a Redis outage."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{free_port()}/0",
        }
    }


@pytest.fixture
def tenant(db: None) -> Tenant:
    return tenant_create(
        name="Acme Shop",
        allowed_origins=["https://shop.example.com"],
        streaming_enabled=True,
        streaming_percentage=100,
    )


@pytest.fixture
def other_tenant(db: None) -> Tenant:
    return tenant_create(name="Globex", allowed_origins=["https://globex.example.com"])


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@dataclass(frozen=True)
class SessionInfo:
    id: uuid.UUID
    token: str
    stream_token: str = ""
    delivery: str = ""

    @property
    def auth(self) -> dict[str, Any]:
        return {"HTTP_AUTHORIZATION": f"Bearer {self.token}"}

    @property
    def url(self) -> str:
        return f"/api/v1/sessions/{self.id}"

    @property
    def messages_url(self) -> str:
        return f"{self.url}/messages"


@pytest.fixture
def make_session(api: APIClient) -> Callable[..., SessionInfo]:
    """Start a session through the API, as the widget does."""

    def make(tenant: Tenant, **extra: Any) -> SessionInfo:
        response = api.post("/api/v1/sessions", {"tenant": tenant.public_key, **extra}, format="json")
        assert response.status_code == 201, response.content
        body = response.json()
        return SessionInfo(
            id=uuid.UUID(body["id"]),
            token=body["token"],
            stream_token=body["stream_token"]["token"],
            delivery=body["delivery"],
        )

    return make


@pytest.fixture
def session(tenant: Tenant, make_session: Callable[..., SessionInfo]) -> SessionInfo:
    return make_session(tenant)


@pytest.fixture
def staff_client(db: None) -> APIClient:
    """A logged-in superuser, for admin pages."""
    user = User.objects.create_superuser(username="root", email="root@example.com", password="pw-for-tests-only")
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture(scope="session", autouse=True)
def close_runner_connections(django_db_setup: None, django_db_blocker: Any) -> Any:
    """Runner tasks use connections of their own threads; end them so the test database can be dropped."""
    yield
    from django.db import connection

    with django_db_blocker.unblock():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )


async def eventually(probe: Callable[[], Awaitable[T | None]], what: str, *, seconds: float = 10) -> T:
    """``probe``'s first truthy answer, asked again and again for ``seconds`` at most; the test fails if none comes."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        answer = await probe()
        if answer:
            return answer
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"never within {seconds} s: {what}")
        await asyncio.sleep(0.02)


# --- Admin helpers ----------------------------------------------------------------------------------------------

# Everything the admin could grant on tenants, chat and streaming, so that what tenant staff cannot do is the
# admin's doing, not a missing permission.
TENANT_STAFF_PERMISSIONS = (
    "add_tenant",
    "change_tenant",
    "delete_tenant",
    "view_tenant",
    "view_tenantchange",
    "add_tenantmembership",
    "change_tenantmembership",
    "delete_tenantmembership",
    "view_tenantmembership",
    "view_chatsession",
    "view_message",
    "view_thoughtstep",
    "view_fallbackreport",
    "view_event",
    "add_serverkey",
    "change_serverkey",
    "view_serverkey",
)


def tenant_staff_client(tenant: Tenant) -> Client:
    """A logged-in staff user (not a superuser) who works for ``tenant``."""
    user = User.objects.create_user(username=f"staff-of-{tenant.slug}", password="pw-for-tests-only", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=TENANT_STAFF_PERMISSIONS))
    TenantMembership.objects.create(user=user, tenant=tenant)
    client = Client()
    client.force_login(user)
    return client


def assert_answers_like_a_missing_object(response: HttpResponseBase) -> None:
    """Django's answer for an object that does not exist: back to the admin's index, with a warning."""
    assert response.status_code == 302
    assert response["Location"] == "/admin/"


def conversation(tenant: Tenant) -> Message:
    """A session of ``tenant`` with a question, a reply with one thought step, and a fallback report; the reply."""
    session = ChatSession.objects.create(tenant=tenant, visitor_id=f"visitor-of-{tenant.slug}")
    question = Message.objects.create(session=session, role=Role.USER, content=f"A question for {tenant.name}")
    reply = Message.objects.create(session=session, role=Role.ASSISTANT, reply_to=question, content="An answer")
    ThoughtStep.objects.create(
        message=reply, index=0, kind=StepKind.THINKING, title=f"Thinking for {tenant.name}", started_at=timezone.now()
    )
    FallbackReport.objects.create(
        tenant=tenant,
        session=session,
        message=reply,
        reason=FallbackReason.TIMEOUT,
        code="STREAM_004",
        from_delivery="stream",
        to_delivery="poll",
    )
    return reply


# --- Live servers -----------------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def database_url() -> str:
    """The test database, as the server processes must reach it."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def request(port: int, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, (json.loads(data) if data else None)


def daphne_start(**env: str) -> tuple[subprocess.Popen[bytes], int]:
    """A Daphne worker on the test database (demo agent unpaced unless ``env`` says otherwise), once it answers."""
    port = free_port()
    environment = {
        **os.environ,
        "DEBUG": "1",
        "DATABASE_URL": database_url(),
        "BROOK_SWEEP_SECONDS": "0",
        "BROOK_DEMO_TOKENS_PER_SECOND": "0",
        "BROOK_DEMO_STEP_SECONDS": "0",
        **env,
    }
    if settings.REDIS_URL:
        environment["REDIS_URL"] = settings.REDIS_URL
    process = subprocess.Popen(  # noqa: S603 - our own server
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(300):
        try:
            if request(port, "GET", "/healthz")[0] == 200:
                return process, port
        except OSError:
            time.sleep(0.05)
    process.terminate()
    raise AssertionError("Daphne did not start")


Server = Callable[..., int]


@pytest.fixture
def server() -> Iterator[Server]:
    """Start Daphne workers on the test database; each call returns a port."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(**env: str) -> int:
        process, port = daphne_start(**env)
        processes.append(process)
        return port

    yield start
    for process in processes:
        process.terminate()
    for process in processes:
        process.wait(timeout=10)

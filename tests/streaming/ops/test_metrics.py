"""Prometheus metrics: each way a reply ends is counted for its tenant, and /metrics is served only to whom it may."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient, Client
from django.utils import timezone
from prometheus_client import REGISTRY
from pytest_django import Settings
from rest_framework.test import APIClient

from chat import services
from chat import services as chat_services
from chat.models import ChatSession, FallbackReason, Message, MessageStatus
from core.errors import ErrorCode
from streaming.agents.base import Agent, AgentError, Emitter, Turn, Usage
from streaming.run.runner import run_reply
from tenants.models import Tenant
from tests.conftest import Agents, SessionInfo
from tests.streaming.conftest import parse_sse, read_body, start_poll, stream_chunks

pytestmark = pytest.mark.django_db(transaction=True)


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Counting:
    """Samples before and after: ``delta(name, **labels)`` is what the block added."""

    def __init__(self) -> None:
        self.before: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    def delta(self, name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return value(name, **labels) - self.before.setdefault(key, 0.0)

    def start(self, *names: tuple[str, dict[str, str]]) -> None:
        for name, labels in names:
            self.before[(name, tuple(sorted(labels.items())))] = value(name, **labels)


def queued_reply(tenant: Tenant) -> Message:
    session = ChatSession.objects.create(tenant=tenant)
    return chat_services.message_submit(session=session, content="What is Brook?").reply


class Scripted(Agent):
    """Answers two tokens after a pause, reports usage, or fails with ``error``."""

    name = "scripted"

    def __init__(self, error: AgentError | None = None) -> None:
        self.error = error

    async def run(self, conversation: Sequence[Turn], emit: Emitter) -> None:
        await asyncio.sleep(0.02)
        await emit.text_delta("Hello ")
        await emit.text_delta("there")
        await emit.usage(Usage(model="m", prompt_tokens=11, completion_tokens=2, reasoning_tokens=3))
        if self.error is not None:
            raise self.error


def test_a_completed_reply_counts_its_start_end_tokens_and_timings(tenant: Tenant, agents: Agents) -> None:
    reply = queued_reply(tenant)
    slug = tenant.slug
    c = Counting()
    c.start(
        ("brook_replies_started_total", {"tenant": slug, "delivery": "batch"}),
        ("brook_replies_ended_total", {"tenant": slug, "delivery": "batch", "outcome": "completed"}),
        ("brook_tokens_total", {"tenant": slug, "kind": "prompt"}),
        ("brook_tokens_total", {"tenant": slug, "kind": "completion"}),
        ("brook_tokens_total", {"tenant": slug, "kind": "reasoning"}),
        ("brook_time_to_first_token_seconds_count", {"tenant": slug}),
        ("brook_time_to_first_token_seconds_bucket", {"tenant": slug, "le": "0.01"}),
        ("brook_time_to_first_token_seconds_bucket", {"tenant": slug, "le": "0.05"}),
        ("brook_reply_duration_seconds_count", {"tenant": slug, "outcome": "completed"}),
    )

    agents.use(tenant, Scripted())
    async_to_sync(run_reply)(reply_id=reply.id)

    assert c.delta("brook_replies_started_total", tenant=slug, delivery="batch") == 1
    assert c.delta("brook_replies_ended_total", tenant=slug, delivery="batch", outcome="completed") == 1
    assert c.delta("brook_tokens_total", tenant=slug, kind="prompt") == 11
    assert c.delta("brook_tokens_total", tenant=slug, kind="completion") == 2
    assert c.delta("brook_tokens_total", tenant=slug, kind="reasoning") == 3
    assert c.delta("brook_time_to_first_token_seconds_count", tenant=slug) == 1
    ttft = Message.objects.get(id=reply.id).time_to_first_token_ms
    assert ttft is not None and ttft >= 20
    # The observation is the stored time to first token: past 20 ms, so in the 0.05 bucket and not in the 0.01 one.
    assert c.delta("brook_time_to_first_token_seconds_bucket", tenant=slug, le="0.01") == 0
    assert c.delta("brook_time_to_first_token_seconds_bucket", tenant=slug, le="0.05") == (1 if ttft <= 50 else 0)
    assert c.delta("brook_reply_duration_seconds_count", tenant=slug, outcome="completed") == 1
    assert value("brook_active_replies", tenant=slug) == 0


def test_a_failed_reply_counts_its_error_code(tenant: Tenant, agents: Agents) -> None:
    reply = queued_reply(tenant)
    slug = tenant.slug
    c = Counting()
    c.start(
        ("brook_replies_ended_total", {"tenant": slug, "delivery": "batch", "outcome": "failed"}),
        ("brook_reply_errors_total", {"tenant": slug, "code": ErrorCode.PROVIDER_RATE_LIMITED}),
    )
    failing = Scripted(AgentError(ErrorCode.PROVIDER_RATE_LIMITED, "Slow down."))

    agents.use(tenant, failing)
    async_to_sync(run_reply)(reply_id=reply.id)

    assert Message.objects.get(id=reply.id).status == MessageStatus.FAILED
    assert c.delta("brook_replies_ended_total", tenant=slug, delivery="batch", outcome="failed") == 1
    assert c.delta("brook_reply_errors_total", tenant=slug, code=ErrorCode.PROVIDER_RATE_LIMITED) == 1


def test_a_reply_cancelled_while_queued_and_one_interrupted_are_counted(tenant: Tenant) -> None:
    slug = tenant.slug
    c = Counting()
    c.start(
        ("brook_replies_ended_total", {"tenant": slug, "delivery": "batch", "outcome": "cancelled"}),
        ("brook_replies_ended_total", {"tenant": slug, "delivery": "batch", "outcome": "interrupted"}),
        ("brook_reply_errors_total", {"tenant": slug, "code": ErrorCode.RUN_INTERRUPTED}),
        ("brook_reply_duration_seconds_count", {"tenant": slug, "outcome": "interrupted"}),
    )
    cancelled = queued_reply(tenant)
    services.reply_cancel(reply_id=cancelled.id)
    crashed = queued_reply(tenant)
    assert services.reply_claim(reply_id=crashed.id, lease_seconds=0.001) is not None

    assert services.reply_interrupt(reply_id=crashed.id, now=timezone.now() + timedelta(seconds=1))

    assert c.delta("brook_replies_ended_total", tenant=slug, delivery="batch", outcome="cancelled") == 1
    assert c.delta("brook_replies_ended_total", tenant=slug, delivery="batch", outcome="interrupted") == 1
    assert c.delta("brook_reply_errors_total", tenant=slug, code=ErrorCode.RUN_INTERRUPTED) == 1
    assert c.delta("brook_reply_duration_seconds_count", tenant=slug, outcome="interrupted") == 1


def test_metrics_are_per_tenant(tenant: Tenant, other_tenant: Tenant) -> None:
    c = Counting()
    c.start(
        ("brook_replies_ended_total", {"tenant": tenant.slug, "delivery": "batch", "outcome": "cancelled"}),
        ("brook_replies_ended_total", {"tenant": other_tenant.slug, "delivery": "batch", "outcome": "cancelled"}),
    )

    services.reply_cancel(reply_id=queued_reply(other_tenant).id)

    assert c.delta("brook_replies_ended_total", tenant=other_tenant.slug, delivery="batch", outcome="cancelled") == 1
    assert c.delta("brook_replies_ended_total", tenant=tenant.slug, delivery="batch", outcome="cancelled") == 0


def test_a_fallback_report_is_counted_by_reason(tenant: Tenant, session: SessionInfo, api: APIClient) -> None:
    c = Counting()
    labels = {"tenant": tenant.slug, "reason": FallbackReason.CONNECTION_FAILED, "to_delivery": "poll"}
    c.start(("brook_fallbacks_total", labels))

    response = api.post(
        f"{session.url}/fallback",
        {"reason": FallbackReason.CONNECTION_FAILED, "from_delivery": "stream", "to_delivery": "poll"},
        format="json",
        **session.auth,
    )

    assert response.status_code == 201, response.content
    assert c.delta("brook_fallbacks_total", **labels) == 1


async def test_an_open_sse_stream_is_an_active_stream_until_it_ends(tenant: Tenant, session: SessionInfo) -> None:
    client = AsyncClient()
    reply_id = await start_poll(client, session)
    streamed = await client.get(
        f"/api/v1/messages/{reply_id}/stream", headers={"Authorization": f"Bearer {session.token}"}
    )
    before = value("brook_active_streams", tenant=tenant.slug, transport="sse")
    chunks = stream_chunks(streamed)

    # A chunk read, the stream waits, open, until the next one is asked for; read_body reads the rest.
    assert (await asyncio.wait_for(anext(chunks), timeout=20)).startswith(b": connected")
    assert value("brook_active_streams", tenant=tenant.slug, transport="sse") == before + 1
    assert parse_sse(await asyncio.wait_for(anext(chunks), timeout=20))[0].event == "message.started"
    assert value("brook_active_streams", tenant=tenant.slug, transport="sse") == before + 1
    assert parse_sse(await read_body(streamed))[-1].event == "message.completed"
    assert value("brook_active_streams", tenant=tenant.slug, transport="sse") == before


# --- /metrics -------------------------------------------------------------------------------------------------------


def scrape(client: Client | None = None, **extra: Any) -> Any:
    return (client or Client()).get("/metrics", **extra)


def test_metrics_are_served_to_loopback_in_prometheus_text_format(tenant: Tenant) -> None:
    services.reply_cancel(reply_id=queued_reply(tenant).id)

    response = scrape(REMOTE_ADDR="127.0.0.1")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    body = response.content.decode()
    assert f'brook_replies_ended_total{{delivery="batch",outcome="cancelled",tenant="{tenant.slug}"}}' in body
    assert "# TYPE brook_time_to_first_token_seconds histogram" in body


@pytest.mark.parametrize("remote", ["203.0.113.9", "10.1.2.3", "::ffff:8.8.8.8"])
def test_metrics_refuse_other_networks_with_a_json_error(remote: str) -> None:
    response = scrape(REMOTE_ADDR=remote)

    assert response.status_code == 403
    assert response.json()["code"] == "FORBIDDEN"
    assert "brook_" not in response.content.decode()


def test_a_configured_network_and_the_bearer_token_are_let_in(settings: Settings) -> None:
    settings.BROOK_METRICS_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    settings.BROOK_METRICS_TOKEN = "s3cret-scrape-token"

    assert scrape(REMOTE_ADDR="10.1.2.3").status_code == 200
    assert scrape(REMOTE_ADDR="127.0.0.1").status_code == 403
    assert scrape(REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer s3cret-scrape-token").status_code == 200
    assert scrape(REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    assert scrape(REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="s3cret-scrape-token").status_code == 403


def test_behind_a_proxy_the_forwarded_client_address_decides(settings: Settings) -> None:
    settings.BROOK_PROXY_HOPS = 1

    # nginx on loopback forwards a visitor from the internet: the visitor's address is what counts.
    assert scrape(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9").status_code == 403
    assert scrape(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="203.0.113.9, 127.0.0.1").status_code == 200


def test_without_networks_or_token_nobody_reads_metrics(settings: Settings) -> None:
    settings.BROOK_METRICS_ALLOWED_NETWORKS = []

    assert scrape(REMOTE_ADDR="127.0.0.1").status_code == 403
    assert scrape(REMOTE_ADDR="127.0.0.1", HTTP_AUTHORIZATION="Bearer ").status_code == 403


def test_metrics_answer_get_only() -> None:
    response = Client().post("/metrics", REMOTE_ADDR="127.0.0.1")

    assert response.status_code == 405


def test_recording_never_breaks_a_reply(tenant: Tenant, agents: Agents) -> None:
    reply = queued_reply(tenant)

    agents.use(tenant, Scripted())
    with mock.patch("core.metrics.REPLIES_ENDED.labels", side_effect=RuntimeError("disk full")):
        async_to_sync(run_reply)(reply_id=reply.id)

    assert Message.objects.get(id=reply.id).status == MessageStatus.COMPLETED

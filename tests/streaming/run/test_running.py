"""Running replies live: cancel, the time limit, double-texting policies, the sweeper and delta coalescing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.test import AsyncClient
from django.utils import timezone
from pytest_django import Settings

from chat import services
from chat import services as chat_services
from chat.events import EventType, LoggedEvent
from chat.models import ChatSession, Event, Message, MessageStatus, StepStatus, ThoughtStep
from streaming.agents.base import Agent, Emitter, Turn
from streaming.run.recorder import LogRecorder
from streaming.run.sweeper import sweep_once
from tenants.models import Tenant
from tests.conftest import Agents, SessionInfo, eventually
from tests.streaming.conftest import assert_whole_log, poll_to_end, stored_log, text_of

pytestmark = [pytest.mark.django_db(transaction=True)]


def auth(session: SessionInfo) -> dict[str, str]:
    return {"Authorization": f"Bearer {session.token}"}


async def send(client: AsyncClient, session: SessionInfo, content: str = "Tell me a story", mode: str = "poll") -> Any:
    return await client.post(
        session.messages_url, {"content": content, "mode": mode}, content_type="application/json", headers=auth(session)
    )


async def wait_for(predicate: Any, *, seconds: float = 10) -> None:
    """Until ``predicate`` (a database read) holds; the test fails after ``seconds``."""
    await eventually(sync_to_async(predicate), "the condition", seconds=seconds)


# --- cancel ---------------------------------------------------------------------------------------------------------


@pytest.mark.slow  # about 2 s or more: make test-fast leaves it out
async def test_cancel_after_the_first_token_keeps_the_partial_answer(session: SessionInfo, settings: Settings) -> None:
    settings.BROOK_DEMO_TOKENS_PER_SECOND = 20
    client = AsyncClient()
    reply_id = (await send(client, session)).json()["id"]
    await wait_for(lambda: Event.objects.filter(message_id=reply_id, type=EventType.TEXT_DELTA).exists())

    response = await client.post(f"/api/v1/messages/{reply_id}/cancel", headers=auth(session))
    events = await poll_to_end(client, reply_id, session.token)

    assert response.status_code in {200, 202}
    assert response.json()["outcome"] in {"requested", "finished"}
    assert events[-1]["type"] == "message.cancelled"
    reply = await sync_to_async(Message.objects.get)(id=reply_id)
    assert reply.status == MessageStatus.CANCELLED
    assert reply.content and reply.content == events[-1]["data"]["content"]
    full = await sync_to_async(lambda: stored_log(reply_id))()
    assert text_of([{"type": t, "data": d} for _, t, d in full]) == reply.content
    steps = await sync_to_async(lambda: list(ThoughtStep.objects.filter(message_id=reply_id)))()
    assert steps and all(step.status != StepStatus.RUNNING for step in steps)


async def test_cancel_before_the_first_token(session: SessionInfo, settings: Settings) -> None:
    settings.BROOK_DEMO_STEP_SECONDS = 5
    client = AsyncClient()
    reply_id = (await send(client, session)).json()["id"]
    await wait_for(lambda: Message.objects.filter(id=reply_id, status=MessageStatus.RUNNING).exists())

    await client.post(f"/api/v1/messages/{reply_id}/cancel", headers=auth(session))
    events = await poll_to_end(client, reply_id, session.token)

    assert events[-1]["type"] == "message.cancelled"
    assert text_of(events) == ""
    again = await client.post(f"/api/v1/messages/{reply_id}/cancel", headers=auth(session))
    assert (again.status_code, again.json()["outcome"], again.json()["status"]) == (200, "finished", "cancelled")


@pytest.mark.slow  # about 2 s or more: make test-fast leaves it out
async def test_cancel_reaches_a_run_through_the_channel_layer(session: SessionInfo, settings: Settings) -> None:
    """The worker taking the cancel does not run the reply: the stop goes through the layer's run group."""
    settings.BROOK_DEMO_TOKENS_PER_SECOND = 20
    client = AsyncClient()
    reply_id = uuid.UUID((await send(client, session)).json()["id"])
    await wait_for(lambda: Event.objects.filter(message_id=reply_id, type=EventType.TEXT_DELTA).exists())

    from streaming.run import runner

    local = runner._stops.pop(reply_id)  # as if the run lived in another process
    try:
        outcome = await runner.cancel(reply_id)
    finally:
        runner._stops[reply_id] = local
    events = await poll_to_end(client, str(reply_id), session.token)

    assert outcome == services.CancelOutcome.REQUESTED
    assert events[-1]["type"] == "message.cancelled"


async def test_cancelling_a_user_message_is_a_400(session: SessionInfo) -> None:
    client = AsyncClient()
    reply_id = (await send(client, session)).json()["id"]
    await poll_to_end(client, reply_id, session.token)
    question = await sync_to_async(lambda: Message.objects.get(id=reply_id).reply_to_id)()

    response = await client.post(f"/api/v1/messages/{question}/cancel", headers=auth(session))

    assert (response.status_code, response.json()["code"]) == (400, "INVALID_INPUT")


async def test_cancel_by_an_outsider_is_404_and_stops_nothing(
    session: SessionInfo, other_tenant: Tenant, make_session: Any, settings: Settings
) -> None:
    client = AsyncClient()
    reply_id = (await send(client, session)).json()["id"]
    outsider = await sync_to_async(make_session)(other_tenant)

    response = await client.post(f"/api/v1/messages/{reply_id}/cancel", headers=auth(outsider))
    events = await poll_to_end(client, reply_id, session.token)

    assert (response.status_code, response.json()["code"]) == (404, "MESSAGE_NOT_FOUND")
    assert events[-1]["type"] == "message.completed"


# --- time limit -----------------------------------------------------------------------------------------------------


class Endless(Agent):
    name = "endless"

    async def run(self, conversation: Sequence[Turn], emit: Emitter) -> None:
        async with emit.step(kind="thinking", title="Thinking forever"):
            await emit.text_delta("So far")
            await asyncio.sleep(60)


async def test_a_run_past_the_tenants_limit_fails_with_stream_004(
    session: SessionInfo, tenant: Tenant, agents: Agents
) -> None:
    await sync_to_async(Tenant.objects.filter(pk=tenant.pk).update)(max_stream_seconds=1)
    client = AsyncClient()
    await sync_to_async(agents.use)(tenant, Endless())
    reply_id = (await send(client, session)).json()["id"]
    events = await poll_to_end(client, reply_id, session.token)

    assert events[-1]["type"] == "message.failed"
    assert events[-1]["data"]["code"] == "STREAM_004"
    assert events[-1]["data"]["content"] == "So far"
    assert_whole_log([e["seq"] for e in events], [e["type"] for e in events])


# --- double texting -------------------------------------------------------------------------------------------------


async def test_reject_policy_answers_409_while_a_reply_runs(session: SessionInfo, settings: Settings) -> None:
    settings.BROOK_DEMO_STEP_SECONDS = 1
    client = AsyncClient()
    first = (await send(client, session)).json()["id"]

    second = await send(client, session, "another thing")

    assert (second.status_code, second.json()["code"]) == (409, "MESSAGE_IN_PROGRESS")
    assert second.json()["details"]["message_id"] == first
    await client.post(f"/api/v1/messages/{first}/cancel", headers=auth(session))
    await poll_to_end(client, first, session.token)


async def test_enqueue_policy_answers_in_order(session: SessionInfo, tenant: Tenant, settings: Settings) -> None:
    await sync_to_async(Tenant.objects.filter(pk=tenant.pk).update)(double_texting="enqueue")
    settings.BROOK_DEMO_STEP_SECONDS = 0.2
    client = AsyncClient()
    first = (await send(client, session, "first question?")).json()["id"]
    second_response = await send(client, session, "second question?")
    second = second_response.json()["id"]

    second_events = await poll_to_end(client, second, session.token)
    first_events = await poll_to_end(client, first, session.token)

    assert second_response.status_code == 202
    assert first_events[-1]["type"] == second_events[-1]["type"] == "message.completed"
    replies = await sync_to_async(lambda: {m.id: m for m in Message.objects.filter(id__in=[first, second])})()
    a, b = replies[uuid.UUID(first)], replies[uuid.UUID(second)]
    assert a.finished_at is not None and b.started_at is not None
    assert a.finished_at <= b.started_at


@pytest.mark.slow  # about 2 s or more: make test-fast leaves it out
async def test_interrupt_policy_cancels_the_running_reply(
    session: SessionInfo, tenant: Tenant, settings: Settings
) -> None:
    await sync_to_async(Tenant.objects.filter(pk=tenant.pk).update)(double_texting="interrupt")
    settings.BROOK_DEMO_TOKENS_PER_SECOND = 20
    client = AsyncClient()
    first = (await send(client, session, "first question?")).json()["id"]
    await wait_for(lambda: Event.objects.filter(message_id=first, type=EventType.TEXT_DELTA).exists())
    settings.BROOK_DEMO_TOKENS_PER_SECOND = 0

    second = (await send(client, session, "never mind, this instead")).json()["id"]
    first_events = await poll_to_end(client, first, session.token)
    second_events = await poll_to_end(client, second, session.token)

    assert first_events[-1]["type"] == "message.cancelled"
    assert second_events[-1]["type"] == "message.completed"


# --- sweeper --------------------------------------------------------------------------------------------------------


def _orphan(tenant: Tenant) -> Message:
    """A reply left running by a worker that died mid-answer, with some of its log written."""
    session = ChatSession.objects.create(tenant=tenant)
    reply = chat_services.message_submit(session=session, content="hello").reply
    claimed = services.reply_claim(reply_id=reply.id, lease_seconds=20)
    assert claimed is not None
    services.log_append(
        message_id=reply.id,
        first_seq=3,
        items=[
            (EventType.STEP_STARTED, {"index": 0}),
            (EventType.REASONING_DELTA, {"delta": "hmm "}),
            (EventType.TEXT_DELTA, {"delta": "Partial "}),
            (EventType.TEXT_DELTA, {"delta": "answer"}),
        ],
        steps=[services.StepOpened(0, "thinking", "Thinking", "", {}, timezone.now())],
    )
    Message.objects.filter(id=reply.id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    return reply


def test_the_sweeper_interrupts_a_reply_whose_worker_died(tenant: Tenant) -> None:
    reply = _orphan(tenant)

    report = async_to_sync(sweep_once)(compact=False)

    assert report.interrupted == 1
    reply.refresh_from_db()
    assert reply.status == MessageStatus.INTERRUPTED
    assert reply.error_code == "RUN_INTERRUPTED"
    assert (reply.content, reply.reasoning) == ("Partial answer", "hmm ")
    log = stored_log(reply.id)
    assert_whole_log([seq for seq, _, _ in log], [kind for _, kind, _ in log])
    assert log[-1][1] == "message.failed" and log[-1][2]["code"] == "RUN_INTERRUPTED"
    assert ThoughtStep.objects.get(message=reply).status == StepStatus.FAILED
    assert async_to_sync(sweep_once)(compact=False).interrupted == 0  # once only


def test_the_sweeper_leaves_live_leases_alone(tenant: Tenant) -> None:
    reply = _orphan(tenant)
    Message.objects.filter(id=reply.id).update(lease_expires_at=timezone.now() + timedelta(seconds=10))

    assert async_to_sync(sweep_once)(compact=False).interrupted == 0
    reply.refresh_from_db()
    assert reply.status == MessageStatus.RUNNING


def test_the_sweeper_compacts_logs_past_retention(tenant: Tenant) -> None:
    reply = _orphan(tenant)
    async_to_sync(sweep_once)(compact=False)
    Message.objects.filter(id=reply.id).update(finished_at=timezone.now() - timedelta(days=8))

    report = async_to_sync(sweep_once)(compact=True)

    assert report.compacted == 1
    reply.refresh_from_db()
    assert reply.log_compacted_at is not None
    assert not Event.objects.filter(message=reply).exists()
    assert reply.content == "Partial answer"


async def test_the_sweeper_restarts_a_queued_reply_nobody_started(session: SessionInfo) -> None:
    db_session = await sync_to_async(ChatSession.objects.get)(id=session.id)
    reply = (await sync_to_async(chat_services.message_submit)(session=db_session, content="hi")).reply
    await sync_to_async(Message.objects.filter(id=reply.id).update)(created_at=timezone.now() - timedelta(minutes=1))

    report = await sweep_once(compact=False)
    events = await poll_to_end(AsyncClient(), str(reply.id), session.token)

    assert report.restarted == 1
    assert events[-1]["type"] == "message.completed"


# --- coalescing -----------------------------------------------------------------------------------------------------


def test_deltas_are_coalesced_and_the_first_is_never_held_back(tenant: Tenant) -> None:
    session = ChatSession.objects.create(tenant=tenant)
    reply = chat_services.message_submit(session=session, content="hi").reply
    claimed = services.reply_claim(reply_id=reply.id, lease_seconds=20)
    assert claimed is not None
    published: list[LoggedEvent] = []

    async def publish(events: Sequence[LoggedEvent]) -> None:
        published.extend(events)

    async def answer() -> LogRecorder:
        recorder = LogRecorder(reply_id=reply.id, next_seq=3, flush_interval=0.25, publish=publish)
        await recorder.text_delta("First")
        assert [e.data for e in published] == [{"delta": "First"}]  # written and published at once
        for n in range(999):
            await recorder.text_delta(f" t{n}")
        await recorder.finish(MessageStatus.COMPLETED)
        return recorder

    recorder = async_to_sync(answer)()

    log = stored_log(reply.id)
    assert_whole_log([seq for seq, _, _ in log], [kind for _, kind, _ in log])
    deltas = [data["delta"] for _, kind, data in log if kind == "text.delta"]
    assert "".join(deltas) == "First" + "".join(f" t{n}" for n in range(999))
    assert len(deltas) <= 3
    assert recorder.writes <= 4
    assert [e.seq for e in published] == [seq for seq, _, _ in log if seq >= 3]


def test_the_sweeper_command_runs_one_pass(tenant: Tenant) -> None:
    import io
    import json

    from django.core.management import call_command

    reply = _orphan(tenant)
    out = io.StringIO()

    call_command("brook_sweeper", "--once", stdout=out)

    assert json.loads(out.getvalue()) == {"interrupted": 1, "timed_out": 0, "restarted": 0, "compacted": 0}
    reply.refresh_from_db()
    assert reply.status == MessageStatus.INTERRUPTED


def test_the_event_log_is_readable_in_the_admin(tenant: Tenant, admin_client: Any) -> None:
    reply = _orphan(tenant)

    listing = admin_client.get("/admin/chat/event/")
    detail = admin_client.get(f"/admin/chat/event/{Event.objects.filter(message=reply).earliest('seq').pk}/change/")

    assert listing.status_code == 200 and b"text.delta" in listing.content
    assert detail.status_code == 200

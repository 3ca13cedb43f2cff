"""The runner and its recorder: a reply runs once, steps are timed, and every ending is recorded."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from asgiref.sync import async_to_sync

from chat import services
from chat.models import ChatSession, Message, MessageStatus, StepKind, StepStatus, ThoughtStep
from core.errors import ErrorCode
from streaming.agents.base import Agent, Emitter, Turn
from streaming.run.runner import run_reply
from tenants.models import Tenant
from tests.conftest import Agents, Silent

pytestmark = pytest.mark.django_db


@pytest.fixture
def reply(tenant: Tenant) -> Message:
    session = ChatSession.objects.create(tenant=tenant)
    submitted = services.message_submit(session=session, content="What is Brook?")
    assert submitted.created
    return submitted.reply


def test_it_runs_a_queued_reply_to_completion(reply: Message) -> None:
    async_to_sync(run_reply)(reply_id=reply.id)

    reply.refresh_from_db()
    assert reply.status == MessageStatus.COMPLETED
    assert reply.content.startswith("You asked")
    assert reply.started_at is not None and reply.finished_at is not None
    assert list(reply.steps.values_list("index", flat=True)) == [0, 1, 2, 3, 4]
    assert not reply.steps.exclude(status=StepStatus.COMPLETED).exists()


def test_a_reply_that_is_not_queued_is_left_alone(reply: Message, agents: Agents, tenant: Tenant) -> None:
    Message.objects.filter(id=reply.id).update(status=MessageStatus.CANCELLED)

    unused = agents.use(tenant, Silent())
    async_to_sync(run_reply)(reply_id=reply.id)

    assert unused.built == 0
    reply.refresh_from_db()
    assert reply.status == MessageStatus.CANCELLED


def test_a_reply_runs_only_once(reply: Message) -> None:
    async_to_sync(run_reply)(reply_id=reply.id)
    first = Message.objects.get(id=reply.id)

    async_to_sync(run_reply)(reply_id=reply.id)

    assert ThoughtStep.objects.filter(message=reply).count() == 5
    assert Message.objects.get(id=reply.id).finished_at == first.finished_at


def test_steps_left_open_by_a_failing_agent_are_marked_failed(reply: Message, agents: Agents, tenant: Tenant) -> None:
    class Broken(Agent):
        name = "broken"

        async def run(self, conversation: Sequence[Turn], emit: Emitter) -> None:
            await emit.step_started(kind=StepKind.THINKING, title="Never finished")
            await emit.tool_call(call_id="c", name="lookup", arguments={"q": object()})
            raise ValueError("boom")

    agents.use(tenant, Broken())
    async_to_sync(run_reply)(reply_id=reply.id)

    reply.refresh_from_db()
    assert (reply.status, reply.error_code) == (MessageStatus.FAILED, ErrorCode.AGENT_ERROR)
    steps = list(reply.steps.order_by("index"))
    assert [s.status for s in steps] == [StepStatus.FAILED, StepStatus.FAILED]
    assert all(s.duration_ms is not None for s in steps)
    assert steps[1].metadata["arguments"]["q"].startswith("<object")  # stored as text, not lost


def test_a_tenant_with_an_unknown_agent_fails_cleanly(reply: Message, tenant: Tenant) -> None:
    Tenant.objects.filter(pk=tenant.pk).update(agent="retired-agent")

    async_to_sync(run_reply)(reply_id=reply.id)

    reply.refresh_from_db()
    assert (reply.status, reply.error_code) == (MessageStatus.FAILED, ErrorCode.AGENT_ERROR)

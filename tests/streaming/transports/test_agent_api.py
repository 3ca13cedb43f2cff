"""The agent API: a tenant's own agent claims a visitor's reply and pushes its events; every transport shows them
as it shows Brook's own agents' (docs/agents.md)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.test import AsyncClient
from django.utils import timezone
from rest_framework.test import APIClient

from chat import services
from chat.models import Event, Message, MessageStatus, ThoughtStep
from streaming.run.sweeper import sweep_once
from tenants.models import Agent, ServerKey, Tenant, ThoughtVisibility
from tenants.services import server_key_create, server_key_revoke
from tests.conftest import SessionInfo
from tests.streaming.conftest import assert_whole_log, parse_sse, poll_to_end, read_body, stored_log

pytestmark = [pytest.mark.django_db(transaction=True)]

QUESTION = "Where is my parcel?"

# A whole reply as an orchestrator pushes it: a step with reasoning, a tool call and its result, the answer, usage.
REPLY = [
    {"seq": 1, "type": "step.started", "data": {"index": 0, "kind": "thinking", "title": "Reading the question"}},
    {"seq": 2, "type": "reasoning.delta", "data": {"delta": "The visitor wants tracking. "}},
    {"seq": 3, "type": "step.completed", "data": {"index": 0}},
    {"seq": 4, "type": "tool.call", "data": {"call_id": "c1", "name": "track", "arguments": {"parcel": "42"}}},
    {"seq": 5, "type": "tool.result", "data": {"call_id": "c1", "result": {"where": "Lyon"}}},
    {"seq": 6, "type": "text.delta", "data": {"delta": "Your parcel "}},
    {"seq": 7, "type": "text.delta", "data": {"delta": "is in Lyon."}},
    {"seq": 8, "type": "usage", "data": {"model": "their-model", "prompt_tokens": 12, "completion_tokens": 5}},
    {"seq": 9, "type": "message.completed"},
]


@pytest.fixture
def own_agent_tenant(tenant: Tenant) -> Tenant:
    Tenant.objects.filter(pk=tenant.pk).update(agent=Agent.EXTERNAL)
    tenant.refresh_from_db()
    return tenant


@pytest.fixture
def key(own_agent_tenant: Tenant) -> str:
    return server_key_create(tenant=own_agent_tenant, name="orchestrator")[1]


class Orchestrator:
    """A tenant's own agent, speaking to Brook over HTTP with its server key."""

    def __init__(self, key: str) -> None:
        self.client = APIClient()
        self.client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")

    def claim(self, wait: float = 0) -> Any:
        return self.client.post("/api/v1/agent/claims", {"wait": wait}, format="json")

    def push(self, reply_id: str, events: list[dict[str, Any]]) -> Any:
        return self.client.post(f"/api/v1/agent/replies/{reply_id}/events", {"events": events}, format="json")

    def heartbeat(self, reply_id: str) -> Any:
        return self.client.post(f"/api/v1/agent/replies/{reply_id}/heartbeat")


def ask(api: APIClient, session: SessionInfo, content: str = QUESTION) -> str:
    response = api.post(session.messages_url, {"content": content, "mode": "poll"}, format="json", **session.auth)
    assert response.status_code == 202, response.content
    return str(response.json()["id"])


def answering(api: APIClient, session: SessionInfo, key: str, *first: dict[str, Any]) -> tuple[str, Orchestrator]:
    """A visitor's reply, claimed by an orchestrator that has pushed ``first`` (renumbered 1, 2, …)."""
    reply_id = ask(api, session)
    agent = Orchestrator(key)
    claimed(agent)
    if first:
        pushed = agent.push(reply_id, [{**event, "seq": n} for n, event in enumerate(first, start=1)])
        assert pushed.status_code == 200, pushed.content
    return reply_id, agent


def claimed(agent: Orchestrator) -> dict[str, Any]:
    response = agent.claim()
    assert response.status_code == 200, response.content
    body: dict[str, Any] = response.json()
    return body


def test_a_pushed_reply_reaches_every_reader_as_brooks_own_do(api: APIClient, session: SessionInfo, key: str) -> None:
    reply_id = ask(api, session)
    agent = Orchestrator(key)

    claim = claimed(agent)
    pushed = agent.push(reply_id, REPLY)

    assert claim["reply_id"] == reply_id and claim["next_seq"] == 1 and claim["stop_requested"] is False
    assert claim["conversation"] == [{"role": "user", "content": QUESTION}]
    assert pushed.status_code == 200, pushed.content
    assert pushed.json() | {"lease_expires_at": None} == {
        "reply_id": reply_id,
        "status": "completed",
        "accepted_seq": 9,
        "next_seq": 10,
        "stop_requested": False,
        "lease_expires_at": None,
    }
    reply = Message.objects.get(id=reply_id)
    assert (reply.status, reply.content, reply.reasoning) == (
        "completed",
        "Your parcel is in Lyon.",
        "The visitor wants tracking. ",
    )
    assert (reply.model, reply.prompt_tokens, reply.completion_tokens) == ("their-model", 12, 5)
    steps = list(ThoughtStep.objects.filter(message_id=reply_id).order_by("index"))
    assert [(s.kind, s.status) for s in steps] == [("thinking", "completed"), ("tool_call", "completed")]
    assert steps[1].metadata["result"] == {"where": "Lyon"}
    log = stored_log(reply_id)
    assert_whole_log([seq for seq, _, _ in log], [kind for _, kind, _ in log])

    polled = async_to_sync(poll_to_end)(AsyncClient(), reply_id, session.token)
    streamed = parse_sse(
        async_to_sync(read_body)(
            async_to_sync(AsyncClient().get)(
                f"/api/v1/messages/{reply_id}/stream", headers={"Authorization": f"Bearer {session.token}"}
            )
        )
    )
    history = api.get(session.url, **session.auth).json()["messages"][-1]
    assert [e["seq"] for e in polled] == [seq for seq, _, _ in log] == [e.id for e in streamed]
    assert history["content"] == "Your parcel is in Lyon." and len(history["steps"]) == 2


def test_a_retried_push_is_acknowledged_and_stores_nothing_twice(
    api: APIClient, session: SessionInfo, key: str
) -> None:
    reply_id = ask(api, session)
    agent = Orchestrator(key)
    claimed(agent)

    first = agent.push(reply_id, REPLY[:4])
    stored = len(stored_log(reply_id))
    again = agent.push(reply_id, REPLY[:4])
    overlapping = agent.push(reply_id, REPLY[2:6])

    assert first.json()["accepted_seq"] == again.json()["accepted_seq"] == 4
    assert len(stored_log(reply_id)) > stored  # 5 and 6 were new
    assert overlapping.json()["accepted_seq"] == 6
    assert [kind for _, kind, _ in stored_log(reply_id)].count("tool.call") == 1


@pytest.mark.parametrize(
    ("events", "status", "code"),
    [
        ([REPLY[1]], 409, "AGENT_SEQUENCE_GAP"),  # seq 2 before 1
        ([REPLY[0], {**REPLY[2], "seq": 2, "data": {"index": 5}}], 409, "AGENT_STEP_UNKNOWN"),
        ([{"seq": 1, "type": "tool.result", "data": {"call_id": "nope", "result": 1}}], 409, "AGENT_STEP_UNKNOWN"),
        (
            [{"seq": 1, "type": "step.started", "data": {"index": 3, "kind": "thinking", "title": "x"}}],
            409,
            "AGENT_STEP_UNKNOWN",
        ),
        (
            [{"seq": 1, "type": "message.completed"}, {"seq": 2, "type": "text.delta", "data": {"delta": "late"}}],
            409,
            "AGENT_REPLY_ENDED",
        ),
        ([{"seq": 1, "type": "message.started"}], 400, "AGENT_EVENT_INVALID"),
        ([{"seq": 0, "type": "text.delta", "data": {"delta": "x"}}], 400, "AGENT_EVENT_INVALID"),
        ([{"seq": True, "type": "text.delta", "data": {"delta": "x"}}], 400, "AGENT_EVENT_INVALID"),
        ([{"seq": 1, "type": "text.delta", "data": {"delta": "a\x00b"}}], 400, "AGENT_EVENT_INVALID"),
        (
            [{"seq": 1, "type": "step.started", "data": {"index": 0, "kind": "dancing", "title": "x"}}],
            400,
            "AGENT_EVENT_INVALID",
        ),
        ([{"seq": n, "type": "text.delta", "data": {"delta": "x"}} for n in range(1, 502)], 413, "PAYLOAD_TOO_LARGE"),
        (
            [
                {
                    "seq": 1,
                    "type": "step.started",
                    "data": {"index": 0, "kind": "thinking", "title": "t", "metadata": {"a": "x\u0000y"}},
                }
            ],
            400,
            "AGENT_EVENT_INVALID",
        ),
        (
            [{"seq": 1, "type": "tool.call", "data": {"call_id": "c", "name": "n", "arguments": {"\u0000": 1}}}],
            400,
            "AGENT_EVENT_INVALID",
        ),
        ([{"seq": 1, "type": "usage", "data": {"completion_tokens": 2**31}}], 400, "AGENT_EVENT_INVALID"),
    ],
)
def test_a_bad_push_is_a_clear_error_and_stores_nothing(
    api: APIClient, session: SessionInfo, key: str, events: list[dict[str, Any]], status: int, code: str
) -> None:
    reply_id = ask(api, session)
    agent = Orchestrator(key)
    claimed(agent)
    before = stored_log(reply_id)

    response = agent.push(reply_id, events)

    assert (response.status_code, response.json()["code"]) == (status, code)
    assert stored_log(reply_id) == before
    assert Message.objects.get(id=reply_id).agent_seq == 0


def test_a_gap_names_the_seq_expected(api: APIClient, session: SessionInfo, key: str) -> None:
    reply_id = ask(api, session)
    agent = Orchestrator(key)
    claimed(agent)
    agent.push(reply_id, REPLY[:2])

    response = agent.push(reply_id, REPLY[3:5])

    assert response.status_code == 409 and response.json()["details"] == {"expected_seq": 3, "position": 0}


def test_nothing_may_be_added_after_the_end(api: APIClient, session: SessionInfo, key: str) -> None:
    reply_id = ask(api, session)
    agent = Orchestrator(key)
    claimed(agent)
    agent.push(reply_id, REPLY)

    late = agent.push(reply_id, [{"seq": 10, "type": "text.delta", "data": {"delta": "one more"}}])
    retried_end = agent.push(reply_id, REPLY[-2:])

    assert (late.status_code, late.json()["code"]) == (409, "AGENT_REPLY_ENDED")
    assert retried_end.status_code == 200 and retried_end.json()["status"] == "completed"


def test_outsiders_and_other_keys_find_no_reply_to_claim_or_push(
    api: APIClient,
    session: SessionInfo,
    key: str,
    own_agent_tenant: Tenant,
    other_tenant: Tenant,
) -> None:
    reply_id = ask(api, session)
    Tenant.objects.filter(pk=other_tenant.pk).update(agent=Agent.EXTERNAL)
    outsider = Orchestrator(server_key_create(tenant=other_tenant, name="theirs")[1])
    colleague = Orchestrator(server_key_create(tenant=own_agent_tenant, name="second worker")[1])

    assert outsider.claim().status_code == 204
    claimed(Orchestrator(key))
    answers = [
        outsider.push(reply_id, REPLY),
        outsider.heartbeat(reply_id),
        colleague.push(reply_id, REPLY),
        colleague.heartbeat(reply_id),
        Orchestrator(key).push("not-a-uuid", REPLY),
    ]

    assert [(a.status_code, a.json()["code"]) for a in answers] == [(404, "MESSAGE_NOT_FOUND")] * 5
    assert Message.objects.get(id=reply_id).agent_seq == 0


def test_brooks_runner_leaves_a_tenants_own_agent_replies_alone(api: APIClient, session: SessionInfo, key: str) -> None:
    reply_id = ask(api, session)
    async_to_sync(sweep_once)(now=timezone.now() + timedelta(seconds=20))  # would restart a stalled Brook reply

    assert Message.objects.get(id=reply_id).status == MessageStatus.QUEUED
    assert [kind for _, kind, _ in stored_log(reply_id)] == ["message.started"]


def test_stop_reaches_the_agent_and_its_cancel_ends_the_reply(api: APIClient, session: SessionInfo, key: str) -> None:
    reply_id, agent = answering(api, session, key, REPLY[5])

    stop = api.post(f"/api/v1/messages/{reply_id}/cancel", **session.auth)
    beat = agent.heartbeat(reply_id)
    ended = agent.push(
        reply_id, [{"seq": 2, "type": "message.cancelled", "data": {"reason": "the visitor stopped it"}}]
    )

    assert (stop.status_code, stop.json()["outcome"]) == (202, "requested")
    assert beat.json()["stop_requested"] is True
    assert ended.json()["status"] == "cancelled"
    reply = Message.objects.get(id=reply_id)
    assert (reply.status, reply.content) == ("cancelled", "Your parcel ")


def test_a_silent_agent_loses_the_reply_to_the_sweeper(api: APIClient, session: SessionInfo, key: str) -> None:
    reply_id, agent = answering(api, session, key, REPLY[5])

    async_to_sync(sweep_once)(now=timezone.now() + timedelta(minutes=5))
    late = agent.push(reply_id, [{**REPLY[6], "seq": 2}])

    reply = Message.objects.get(id=reply_id)
    assert (reply.status, reply.error_code, reply.content) == ("interrupted", "RUN_INTERRUPTED", "Your parcel ")
    assert (late.status_code, late.json()["code"]) == (409, "AGENT_REPLY_ENDED")


def test_hidden_steps_are_tracked_but_not_stored(
    api: APIClient, session: SessionInfo, key: str, own_agent_tenant: Tenant
) -> None:
    Tenant.objects.filter(pk=own_agent_tenant.pk).update(thought_visibility=ThoughtVisibility.HIDDEN)
    reply_id = ask(api, session)
    agent = Orchestrator(key)
    claimed(agent)

    pushed = agent.push(reply_id, REPLY)

    assert pushed.status_code == 200 and pushed.json()["status"] == "completed"
    assert not ThoughtStep.objects.filter(message_id=reply_id).exists()
    kinds = {kind for _, kind, _ in stored_log(reply_id)}
    assert kinds.isdisjoint({"step.started", "tool.call", "reasoning.delta"})
    assert Message.objects.get(id=reply_id).content == "Your parcel is in Lyon."


async def test_a_waiting_claim_wakes_when_a_visitor_asks(session: SessionInfo, key: str) -> None:
    agent = Orchestrator(key)
    waiting = asyncio.create_task(sync_to_async(agent.claim, thread_sensitive=False)(wait=20))
    await asyncio.sleep(0)
    started = asyncio.get_running_loop().time()
    client = AsyncClient()
    response = await client.post(
        session.messages_url,
        {"content": QUESTION, "mode": "poll"},
        content_type="application/json",
        headers={"Authorization": f"Bearer {session.token}"},
    )
    reply_id = response.json()["id"]

    claim = await asyncio.wait_for(waiting, timeout=15)

    assert claim.status_code == 200 and claim.json()["reply_id"] == reply_id
    assert asyncio.get_running_loop().time() - started < 10  # woken, not timed out at 20 s
    assert await sync_to_async(lambda: Message.objects.get(id=reply_id).status)() == MessageStatus.RUNNING
    assert await sync_to_async(Event.objects.filter(message_id=reply_id, type="status").exists)()


def test_an_empty_claim_is_a_204(key: str) -> None:
    assert Orchestrator(key).claim().status_code == 204


def test_a_null_character_deep_in_a_tool_result_is_refused(api: APIClient, session: SessionInfo, key: str) -> None:
    reply_id, agent = answering(api, session, key, REPLY[3])

    response = agent.push(
        reply_id, [{"seq": 2, "type": "tool.result", "data": {"call_id": "c1", "result": {"k": [["\u0000"]]}}}]
    )

    assert (response.status_code, response.json()["code"]) == (400, "AGENT_EVENT_INVALID")


def test_an_error_names_the_events_position_in_the_whole_batch(api: APIClient, session: SessionInfo, key: str) -> None:
    reply_id = ask(api, session)
    agent = Orchestrator(key)
    claimed(agent)
    agent.push(reply_id, REPLY[:3])

    response = agent.push(reply_id, [*REPLY[:3], {"seq": 4, "type": "step.completed", "data": {"index": 0}}])

    assert response.json()["code"] == "AGENT_STEP_UNKNOWN" and response.json()["details"]["position"] == 3


def test_a_finished_reply_says_so_whatever_seq_comes(api: APIClient, session: SessionInfo, key: str) -> None:
    reply_id = ask(api, session)
    agent = Orchestrator(key)
    claimed(agent)
    agent.push(reply_id, REPLY)

    response = agent.push(reply_id, [{"seq": 12, "type": "text.delta", "data": {"delta": "late"}}])

    assert response.json()["code"] == "AGENT_REPLY_ENDED"


def test_steps_left_open_are_closed_in_the_log_when_the_reply_ends(
    api: APIClient, session: SessionInfo, key: str
) -> None:
    reply_id = ask(api, session)
    agent = Orchestrator(key)
    claimed(agent)

    agent.push(reply_id, [REPLY[0], {"seq": 2, "type": "message.failed", "data": {"message": "gave up"}}])

    kinds = [(kind, data.get("index"), data.get("status")) for _, kind, data in stored_log(reply_id)]
    assert ("step.completed", 0, "failed") in kinds
    assert kinds[-1][0] == "message.failed"
    assert list(ThoughtStep.objects.filter(message_id=reply_id).values_list("status", flat=True)) == ["failed"]


def test_a_tool_calls_id_is_free_again_once_its_step_was_closed(api: APIClient, session: SessionInfo, key: str) -> None:
    reply_id = ask(api, session)
    agent = Orchestrator(key)
    claimed(agent)
    agent.push(reply_id, [{**REPLY[3], "seq": 1}, {"seq": 2, "type": "step.completed", "data": {"index": 0}}])

    again = agent.push(reply_id, [{**REPLY[3], "seq": 3}])

    assert again.status_code == 200, again.content


def test_visibility_opened_mid_reply_never_logs_the_end_of_a_step_it_hid(
    api: APIClient, session: SessionInfo, key: str, own_agent_tenant: Tenant
) -> None:
    Tenant.objects.filter(pk=own_agent_tenant.pk).update(thought_visibility=ThoughtVisibility.HIDDEN)
    reply_id = ask(api, session)
    agent = Orchestrator(key)
    claimed(agent)
    agent.push(reply_id, [{**REPLY[0], "seq": 1}, {**REPLY[3], "seq": 2}])
    Tenant.objects.filter(pk=own_agent_tenant.pk).update(thought_visibility=ThoughtVisibility.FULL)

    pushed = agent.push(
        reply_id,
        [
            {"seq": 3, "type": "tool.result", "data": {"call_id": "c1", "result": "R"}},
            {"seq": 4, "type": "step.completed", "data": {"index": 0, "metadata": {"note": "done"}}},
            {"seq": 5, "type": "message.completed"},
        ],
    )

    assert pushed.status_code == 200, pushed.content
    kinds = [kind for _, kind, _ in stored_log(reply_id)]
    assert not {"step.completed", "tool.result", "step.started"} & set(kinds)


def test_a_key_revoked_while_its_claim_waits_takes_nothing(
    api: APIClient, session: SessionInfo, key: str, own_agent_tenant: Tenant
) -> None:
    reply_id = ask(api, session)
    revoked = ServerKey.objects.get(tenant=own_agent_tenant)
    server_key_revoke(key=revoked)

    assert services.reply_claim_next(agent_key=revoked, lease_seconds=30) is None
    assert Message.objects.get(id=reply_id).status == MessageStatus.QUEUED


def test_a_reply_cannot_grow_without_bound(api: APIClient, session: SessionInfo, key: str) -> None:
    reply_id = ask(api, session)
    agent = Orchestrator(key)
    claimed(agent)
    big = "x" * 90_000

    answers = [agent.push(reply_id, [{"seq": n, "type": "text.delta", "data": {"delta": big}}]) for n in range(1, 7)]

    assert [a.status_code for a in answers] == [200] * 5 + [413]
    assert len(Message.objects.get(id=reply_id).content) == 450_000


def test_a_lone_surrogate_deep_in_the_arguments_is_refused(api: APIClient, session: SessionInfo, key: str) -> None:
    reply_id = ask(api, session)
    claimed(Orchestrator(key))
    raw = (
        b'{"events": [{"seq": 1, "type": "tool.call", '
        b'"data": {"call_id": "c", "name": "n", "arguments": {"a": ["\\udfff"]}}}]}'
    )

    response = APIClient().post(
        f"/api/v1/agent/replies/{reply_id}/events",
        raw,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {key}",
    )

    assert (response.status_code, response.json()["code"]) == (400, "AGENT_EVENT_INVALID")
    assert Message.objects.get(id=reply_id).agent_seq == 0


# --- Time limits: a tenant's own agent is held to them as Brook's runs are ----------------------------------------


def test_a_reply_no_agent_claims_in_time_fails(api: APIClient, session: SessionInfo, key: str) -> None:
    reply_id = ask(api, session)
    tenant_limit = Message.objects.get(id=reply_id).session.tenant.max_stream_seconds

    async_to_sync(sweep_once)(now=timezone.now() + timedelta(seconds=tenant_limit - 1))
    still = Message.objects.get(id=reply_id).status
    async_to_sync(sweep_once)(now=timezone.now() + timedelta(seconds=tenant_limit + 1))

    reply = Message.objects.get(id=reply_id)
    assert still == MessageStatus.QUEUED
    assert (reply.status, reply.error_code) == ("failed", "AGENT_UNAVAILABLE")
    assert stored_log(reply_id)[-1][1] == "message.failed"


def test_a_reply_running_past_the_tenants_limit_fails_with_stream_004(
    api: APIClient, session: SessionInfo, key: str, own_agent_tenant: Tenant
) -> None:
    Tenant.objects.filter(pk=own_agent_tenant.pk).update(max_stream_seconds=5)
    reply_id, agent = answering(api, session, key, REPLY[5])

    async_to_sync(sweep_once)(now=timezone.now() + timedelta(seconds=6))  # within the lease: not an interruption
    late = agent.push(reply_id, [{**REPLY[6], "seq": 2}])

    reply = Message.objects.get(id=reply_id)
    assert (reply.status, reply.error_code, reply.content) == ("failed", "STREAM_004", "Your parcel ")
    assert late.json()["code"] == "AGENT_REPLY_ENDED"


def test_a_stop_the_agent_ignores_ends_the_reply_anyway(api: APIClient, session: SessionInfo, key: str) -> None:
    reply_id, _agent = answering(api, session, key, REPLY[5])
    api.post(f"/api/v1/messages/{reply_id}/cancel", **session.auth)

    async_to_sync(sweep_once)(now=timezone.now() + timedelta(seconds=3))
    grace = Message.objects.get(id=reply_id).status
    async_to_sync(sweep_once)(now=timezone.now() + timedelta(seconds=11))

    reply = Message.objects.get(id=reply_id)
    assert grace == MessageStatus.RUNNING  # the agent had its chance to end it itself
    assert (reply.status, reply.content) == ("cancelled", "Your parcel ")
    assert stored_log(reply_id)[-1][1] == "message.cancelled"


def test_batch_mode_waits_for_the_agent_then_gives_up_at_the_limit(
    api: APIClient, session: SessionInfo, key: str, own_agent_tenant: Tenant
) -> None:
    Tenant.objects.filter(pk=own_agent_tenant.pk).update(max_stream_seconds=1)

    response = api.post(session.messages_url, {"content": QUESTION, "mode": "batch"}, format="json", **session.auth)

    assert response.status_code == 200
    assert (response.json()["status"], response.json()["error"]["code"]) == ("failed", "AGENT_UNAVAILABLE")

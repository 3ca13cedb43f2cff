"""The LLM agent on an OpenAI-compatible API, through the official ``openai`` SDK, against a local fake upstream."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from pytest_django import Settings
from rest_framework.test import APIClient

from chat.models import Event, Message, ThoughtStep
from tenants.models import Tenant
from tests.conftest import SessionInfo
from tests.streaming.agents.providers.conftest import ask, stop_mid_answer
from tests.streaming.agents.providers.fake_upstream import FakeUpstream, openai_chunk, openai_usage

SECRET = "sk-test-do-not-leak-1234"


@pytest.fixture
def llm_tenant(tenant: Tenant, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch) -> Tenant:
    monkeypatch.setenv("BROOK_SECRET_ACME_OPENAI", SECRET)
    Tenant.objects.filter(pk=tenant.pk).update(
        agent="llm",
        llm_provider="openai",
        llm_model="test-model",
        llm_base_url=upstream.base_url,
        llm_api_key_secret="ACME_OPENAI",
        llm_system_prompt="You are Acme's helpful assistant.",
    )
    tenant.refresh_from_db()
    return tenant


def log_types(message_id: str) -> list[str]:
    return list(Event.objects.filter(message_id=message_id).order_by("seq").values_list("type", flat=True))


@pytest.mark.django_db
def test_it_streams_the_answer_and_records_usage(
    api: APIClient, session: SessionInfo, llm_tenant: Tenant, upstream: FakeUpstream
) -> None:
    upstream.add(events=[openai_chunk(content="It is "), openai_chunk(content="42."), openai_usage(12, 5)])

    reply = ask(api, session)

    assert (reply["status"], reply["content"], reply["model"]) == ("completed", "It is 42.", "test-model")
    assert reply["usage"] == {"prompt_tokens": 12, "completion_tokens": 5, "reasoning_tokens": 0}
    assert [s["kind"] for s in reply["steps"]] == ["model_call"]
    sent = upstream.requests[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {SECRET}"
    assert sent.body["stream"] is True and sent.body["stream_options"] == {"include_usage": True}
    assert sent.body["messages"][0] == {"role": "system", "content": "You are Acme's helpful assistant."}
    assert sent.body["messages"][-1] == {"role": "user", "content": "What is 6 times 7?"}
    assert {tool["function"]["name"] for tool in sent.body["tools"]} == {"calculator", "current_time"}


@pytest.mark.django_db
@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_fields_become_reasoning_not_answer(
    api: APIClient, session: SessionInfo, llm_tenant: Tenant, upstream: FakeUpstream, field: str
) -> None:
    first: dict[str, Any] = {field: "Six sevens "}
    second: dict[str, Any] = {field: "are 42."}
    upstream.add(
        events=[
            openai_chunk(**first),
            openai_chunk(**second),
            openai_chunk(content="42"),
            openai_usage(10, 9, reasoning=6),
        ]
    )

    reply = ask(api, session)

    assert (reply["reasoning"], reply["content"]) == ("Six sevens are 42.", "42")
    assert reply["usage"]["reasoning_tokens"] == 6
    assert "reasoning.delta" in log_types(reply["id"])


@pytest.mark.django_db
def test_think_tags_split_across_chunks_become_reasoning(
    api: APIClient, session: SessionInfo, llm_tenant: Tenant, upstream: FakeUpstream
) -> None:
    upstream.add(events=[openai_chunk(content=c) for c in ["<th", "ink>Multiply.</th", "ink>\n\n", "42"]])

    reply = ask(api, session)

    assert (reply["reasoning"], reply["content"]) == ("Multiply.", "42")


@pytest.mark.django_db
def test_a_template_that_opens_think_in_the_prompt(
    api: APIClient, session: SessionInfo, llm_tenant: Tenant, upstream: FakeUpstream
) -> None:
    Tenant.objects.filter(pk=llm_tenant.pk).update(llm_reasoning_starts_open=True)
    upstream.add(events=[openai_chunk(content="Hmm, 6*7.</think>"), openai_chunk(content="42")])

    reply = ask(api, session)

    assert (reply["reasoning"], reply["content"]) == ("Hmm, 6*7.", "42")


@pytest.mark.django_db
def test_tool_calls_run_and_the_loop_continues_until_the_answer(
    api: APIClient, session: SessionInfo, llm_tenant: Tenant, upstream: FakeUpstream
) -> None:
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "calculator", "arguments": ""}}
    upstream.add(
        events=[
            openai_chunk(tool_calls=[call]),
            openai_chunk(tool_calls=[{"index": 0, "function": {"arguments": '{"expression": '}}]),
            openai_chunk(tool_calls=[{"index": 0, "function": {"arguments": '"6 * 7"}'}}], finish="tool_calls"),
            openai_usage(20, 8),
        ]
    )
    upstream.add(events=[openai_chunk(content="6 times 7 is 42."), openai_usage(30, 6)])

    reply = ask(api, session)

    assert reply["content"] == "6 times 7 is 42."
    assert [s["kind"] for s in reply["steps"]] == ["model_call", "tool_call", "model_call"]
    tool_step = reply["steps"][1]
    assert tool_step["metadata"]["arguments"] == {"expression": "6 * 7"}
    assert tool_step["metadata"]["result"] == {"expression": "6 * 7", "value": 42}
    assert reply["usage"]["prompt_tokens"] == 50
    types = log_types(reply["id"])
    assert types.index("tool.call") < types.index("tool.result") < types.index("text.delta")
    followup = upstream.requests[1].body["messages"]
    assert followup[-2]["tool_calls"][0]["function"]["name"] == "calculator"
    assert followup[-1] == {"role": "tool", "tool_call_id": "call_1", "content": '{"expression": "6 * 7", "value": 42}'}


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("status", "code"),
    [(401, "PROVIDER_AUTH"), (403, "PROVIDER_AUTH"), (404, "PROVIDER_NOT_FOUND"), (400, "PROVIDER_BAD_REQUEST")],
)
def test_upstream_refusals_fail_with_a_code_and_never_echo_the_key(
    api: APIClient, session: SessionInfo, llm_tenant: Tenant, upstream: FakeUpstream, status: int, code: str
) -> None:
    upstream.add(status=status, error={"error": {"message": f"Incorrect API key provided: {SECRET}"}})

    reply = ask(api, session)

    assert (reply["status"], reply["error"]["code"]) == ("failed", code)
    assert len(upstream.requests) == 1  # not retried
    stored = Message.objects.get(id=reply["id"])
    everything = str(reply) + str(list(Event.objects.filter(message=stored).values_list("data", flat=True)))
    assert SECRET not in everything
    assert log_types(reply["id"])[-1] == "message.failed"


@pytest.mark.django_db
def test_rate_limits_and_server_errors_are_retried_before_the_first_token(
    api: APIClient, session: SessionInfo, llm_tenant: Tenant, upstream: FakeUpstream
) -> None:
    upstream.add(status=429)
    upstream.add(status=503)
    upstream.add(events=[openai_chunk(content="Fine now.")])

    reply = ask(api, session)

    assert (reply["status"], reply["content"]) == ("completed", "Fine now.")
    assert len(upstream.requests) == 3
    assert reply["steps"][0]["metadata"]["attempts"] == 2


@pytest.mark.django_db
def test_retries_are_bounded(api: APIClient, session: SessionInfo, llm_tenant: Tenant, upstream: FakeUpstream) -> None:
    for _ in range(5):
        upstream.add(status=500)

    reply = ask(api, session)

    assert (reply["status"], reply["error"]["code"]) == ("failed", "PROVIDER_UNAVAILABLE")
    assert len(upstream.requests) == 3


@pytest.mark.django_db
def test_a_malformed_chunk_after_tokens_fails_keeping_the_partial_answer_and_is_not_retried(
    api: APIClient, session: SessionInfo, llm_tenant: Tenant, upstream: FakeUpstream
) -> None:
    upstream.add(events=[openai_chunk(content="Partial"), "{this is not json"], done_marker=False)
    upstream.add(events=[openai_chunk(content="SECOND RUN")])

    reply = ask(api, session)

    assert (reply["status"], reply["error"]["code"], reply["content"]) == ("failed", "PROVIDER_BAD_RESPONSE", "Partial")
    assert len(upstream.requests) == 1


@pytest.mark.django_db
def test_no_first_token_in_time_is_a_timeout(
    api: APIClient, session: SessionInfo, llm_tenant: Tenant, upstream: FakeUpstream, settings: Settings
) -> None:
    settings.BROOK_LLM_FIRST_TOKEN_TIMEOUT = 0.3
    for _ in range(3):
        upstream.add(events=[openai_chunk(content="late")], delay_first=1.0)

    reply = ask(api, session)

    assert (reply["status"], reply["error"]["code"], reply["content"]) == ("failed", "PROVIDER_TIMEOUT", "")


@pytest.mark.django_db
def test_a_stall_between_chunks_is_a_timeout_keeping_the_partial_answer(
    api: APIClient, session: SessionInfo, llm_tenant: Tenant, upstream: FakeUpstream, settings: Settings
) -> None:
    settings.BROOK_LLM_IDLE_TIMEOUT = 0.3
    upstream.add(events=[openai_chunk(content="Half"), openai_chunk(content=" more")], delay_each=1.0)

    reply = ask(api, session)

    assert (reply["status"], reply["error"]["code"], reply["content"]) == ("failed", "PROVIDER_TIMEOUT", "Half")
    assert len(upstream.requests) == 1


@pytest.mark.django_db
def test_an_unconfigured_model_fails_cleanly(api: APIClient, session: SessionInfo, tenant: Tenant) -> None:
    Tenant.objects.filter(pk=tenant.pk).update(agent="llm", llm_model="")

    reply = ask(api, session)

    assert (reply["status"], reply["error"]["code"]) == ("failed", "PROVIDER_NOT_CONFIGURED")


@pytest.mark.django_db
def test_a_missing_secret_fails_cleanly(
    api: APIClient, session: SessionInfo, llm_tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BROOK_SECRET_ACME_OPENAI")

    reply = ask(api, session)

    assert (reply["status"], reply["error"]["code"]) == ("failed", "PROVIDER_NOT_CONFIGURED")


@pytest.mark.django_db(transaction=True)
async def test_stop_closes_the_upstream_connection(
    session: SessionInfo, llm_tenant: Tenant, upstream: FakeUpstream
) -> None:
    upstream.add(events=[openai_chunk(content=f" t{n}") for n in range(400)], delay_each=0.02)
    events = await stop_mid_answer(session, upstream)

    reply = await sync_to_async(Message.objects.get)(id=events[-1]["message_id"])
    assert reply.content.startswith(" t0") and reply.content == events[-1]["data"]["content"]
    step = await sync_to_async(ThoughtStep.objects.get)(message_id=reply.id)
    assert step.status == "failed"

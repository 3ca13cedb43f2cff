"""The LLM agent on Amazon Bedrock's ConverseStream, through boto3, against a local AWS event-stream server."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tenants.models import Tenant
from tests.conftest import SessionInfo
from tests.streaming.agents.providers.conftest import ask, stop_mid_answer
from tests.streaming.agents.providers.fake_upstream import FakeUpstream, bedrock_stream

SECRET = "AKIATESTKEY:very-secret-access-key-9999"


@pytest.fixture
def bedrock(tenant: Tenant, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch) -> Tenant:
    monkeypatch.setenv("BROOK_SECRET_ACME_AWS", SECRET)
    Tenant.objects.filter(pk=tenant.pk).update(
        agent="llm",
        llm_provider="bedrock",
        llm_model="anthropic.claude-3-haiku-20240307-v1:0",
        llm_base_url=upstream.root_url,
        llm_api_key_secret="ACME_AWS",
        llm_system_prompt="Be brief.",
    )
    tenant.refresh_from_db()
    return tenant


@pytest.mark.django_db
def test_reasoning_and_text_stream_through_converse(
    api: APIClient, session: SessionInfo, bedrock: Tenant, upstream: FakeUpstream
) -> None:
    upstream.add(
        aws_events=bedrock_stream(
            ("reasoning", (["Six sevens", " are 42."], "sig-b")),
            ("text", ["It is ", "42."]),
            input_tokens=17,
            output_tokens=9,
        )
    )

    reply = ask(api, session)

    assert (reply["status"], reply["reasoning"], reply["content"]) == ("completed", "Six sevens are 42.", "It is 42.")
    assert reply["usage"]["prompt_tokens"] == 17 and reply["usage"]["completion_tokens"] == 9
    sent = upstream.requests[0]
    assert sent.path == "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream"
    assert "Credential=AKIATESTKEY/" in sent.headers["authorization"]  # SigV4 with the tenant's key
    assert sent.body["system"] == [{"text": "Be brief."}]
    assert sent.body["messages"] == [{"role": "user", "content": [{"text": "What is 6 times 7?"}]}]
    assert {t["toolSpec"]["name"] for t in sent.body["toolConfig"]["tools"]} == {"calculator", "current_time"}


@pytest.mark.django_db
def test_a_tool_call_round_trips_with_its_reasoning_block(
    api: APIClient, session: SessionInfo, bedrock: Tenant, upstream: FakeUpstream
) -> None:
    upstream.add(
        aws_events=bedrock_stream(
            ("reasoning", (["Calculate."], "sig-1")),
            ("tool_use", ("tool-1", "calculator", ['{"expression": ', '"6*7"}'])),
            stop="tool_use",
        )
    )
    upstream.add(aws_events=bedrock_stream(("text", ["42."])))

    reply = ask(api, session)

    assert reply["content"] == "42."
    assert [s["kind"] for s in reply["steps"]] == ["model_call", "tool_call", "model_call"]
    followup = upstream.requests[1].body["messages"]
    assert followup[-2]["content"] == [
        {"reasoningContent": {"reasoningText": {"text": "Calculate.", "signature": "sig-1"}}},
        {"toolUse": {"toolUseId": "tool-1", "name": "calculator", "input": {"expression": "6*7"}}},
    ]
    assert followup[-1]["content"][0]["toolResult"]["toolUseId"] == "tool-1"


@pytest.mark.django_db
def test_throttling_is_retried_and_an_in_stream_exception_after_tokens_fails_keeping_them(
    api: APIClient, session: SessionInfo, bedrock: Tenant, upstream: FakeUpstream
) -> None:
    upstream.add(status=429, error={"message": "Too many requests"}, error_type="ThrottlingException")
    upstream.add(
        aws_events=[
            ("messageStart", {"role": "assistant"}),
            ("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": "Partial"}}),
            ("modelStreamErrorException", {"message": "model failed"}, "exception"),
        ]
    )

    reply = ask(api, session)

    assert (reply["status"], reply["error"]["code"], reply["content"]) == ("failed", "PROVIDER_UNAVAILABLE", "Partial")
    assert len(upstream.requests) == 2


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("status", "error_type", "code"),
    [(403, "AccessDeniedException", "PROVIDER_AUTH"), (404, "ResourceNotFoundException", "PROVIDER_NOT_FOUND")],
)
def test_refusals_fail_with_a_code_and_never_echo_the_key(
    api: APIClient,
    session: SessionInfo,
    bedrock: Tenant,
    upstream: FakeUpstream,
    status: int,
    error_type: str,
    code: str,
) -> None:
    upstream.add(status=status, error={"message": f"denied for {SECRET}"}, error_type=error_type)

    reply = ask(api, session)

    assert (reply["status"], reply["error"]["code"]) == ("failed", code)
    assert "very-secret" not in str(reply)
    assert len(upstream.requests) == 1


@pytest.mark.django_db(transaction=True)
async def test_stop_closes_the_upstream_connection(
    session: SessionInfo, bedrock: Tenant, upstream: FakeUpstream
) -> None:
    upstream.add(aws_events=bedrock_stream(("text", [f" t{n}" for n in range(400)])), delay_each=0.02)
    await stop_mid_answer(session, upstream)

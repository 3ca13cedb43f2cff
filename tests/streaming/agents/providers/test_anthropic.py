"""The LLM agent on Anthropic's Messages API, through the official ``anthropic`` SDK, against a local fake upstream."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tenants.models import Tenant
from tests.conftest import SessionInfo
from tests.streaming.agents.providers.conftest import ask, stop_mid_answer
from tests.streaming.agents.providers.fake_upstream import FakeUpstream, anthropic_stream

SECRET = "sk-ant-test-never-shown-5678"

pytestmark = pytest.mark.django_db


@pytest.fixture
def claude(tenant: Tenant, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch) -> Tenant:
    monkeypatch.setenv("BROOK_SECRET_ACME_CLAUDE", SECRET)
    Tenant.objects.filter(pk=tenant.pk).update(
        agent="llm",
        llm_provider="anthropic",
        llm_model="claude-test",
        llm_base_url=upstream.root_url,
        llm_api_key_secret="ACME_CLAUDE",
        llm_system_prompt="Be brief.",
        llm_max_tokens=4096,
        llm_thinking_budget=2048,
    )
    tenant.refresh_from_db()
    return tenant


def test_thinking_streams_as_reasoning_and_text_as_the_answer(
    api: APIClient, session: SessionInfo, claude: Tenant, upstream: FakeUpstream
) -> None:
    upstream.add(
        events=anthropic_stream(
            ("thinking", (["Six sevens", " make 42."], "sig-abc")),
            ("text", ["It is ", "42."]),
            input_tokens=21,
            output_tokens=13,
        ),
        done_marker=False,
    )

    reply = ask(api, session)

    assert (reply["status"], reply["reasoning"], reply["content"]) == ("completed", "Six sevens make 42.", "It is 42.")
    assert reply["usage"]["prompt_tokens"] == 21 and reply["usage"]["completion_tokens"] == 13
    sent = upstream.requests[0]
    assert sent.path == "/v1/messages"
    assert SECRET in (sent.headers.get("x-api-key", ""), sent.headers.get("authorization", "").removeprefix("Bearer "))
    assert sent.body["system"] == "Be brief."
    assert sent.body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert sent.body["messages"] == [{"role": "user", "content": "What is 6 times 7?"}]
    assert {tool["name"] for tool in sent.body["tools"]} == {"calculator", "current_time"}


def test_thinking_tags_in_text_are_reasoning_too(
    api: APIClient, session: SessionInfo, claude: Tenant, upstream: FakeUpstream
) -> None:
    upstream.add(events=anthropic_stream(("text", ["<thinking>hm", "m</thinking>", "<answer>42</answer>"])))

    reply = ask(api, session)

    assert (reply["reasoning"], reply["content"]) == ("hmm", "42")


def test_a_tool_call_sends_back_the_thinking_block_with_its_signature(
    api: APIClient, session: SessionInfo, claude: Tenant, upstream: FakeUpstream
) -> None:
    upstream.add(
        events=anthropic_stream(
            ("thinking", (["I should calculate."], "sig-1")),
            ("tool_use", ("toolu_1", "calculator", ['{"expression"', ': "6*7"}'])),
            stop="tool_use",
        )
    )
    upstream.add(events=anthropic_stream(("text", ["42."])))

    reply = ask(api, session)

    assert reply["content"] == "42."
    assert [s["kind"] for s in reply["steps"]] == ["model_call", "tool_call", "model_call"]
    followup = upstream.requests[1].body["messages"]
    assert followup[-2] == {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "I should calculate.", "signature": "sig-1"},
            {"type": "tool_use", "id": "toolu_1", "name": "calculator", "input": {"expression": "6*7"}},
        ],
    }
    assert followup[-1] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": '{"expression": "6*7", "value": 42}'}],
    }


def test_an_overloaded_error_inside_the_stream_is_retried_before_the_first_token(
    api: APIClient, session: SessionInfo, claude: Tenant, upstream: FakeUpstream
) -> None:
    upstream.add(events=[("error", {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})])
    upstream.add(events=anthropic_stream(("text", ["Back."])))

    reply = ask(api, session)

    assert (reply["status"], reply["content"]) == ("completed", "Back.")
    assert len(upstream.requests) == 2


@pytest.mark.parametrize(("status", "code"), [(401, "PROVIDER_AUTH"), (404, "PROVIDER_NOT_FOUND")])
def test_refusals_fail_with_a_code_and_never_echo_the_key(
    api: APIClient, session: SessionInfo, claude: Tenant, upstream: FakeUpstream, status: int, code: str
) -> None:
    upstream.add(status=status, error={"type": "error", "error": {"type": "authentication_error", "message": SECRET}})

    reply = ask(api, session)

    assert (reply["status"], reply["error"]["code"]) == ("failed", code)
    assert SECRET not in str(reply)


def test_without_a_thinking_budget_no_thinking_is_asked_for(
    api: APIClient, session: SessionInfo, claude: Tenant, upstream: FakeUpstream
) -> None:
    Tenant.objects.filter(pk=claude.pk).update(llm_thinking_budget=0, llm_temperature=0.3)
    upstream.add(events=anthropic_stream(("text", ["ok"])))

    reply = ask(api, session)

    assert reply["content"] == "ok"
    assert "thinking" not in upstream.requests[0].body
    assert "temperature" not in upstream.requests[0].body  # the SDK's Messages API takes none


@pytest.mark.django_db(transaction=True)
async def test_stop_closes_the_upstream_connection(
    session: SessionInfo, claude: Tenant, upstream: FakeUpstream
) -> None:

    upstream.add(events=anthropic_stream(("text", [f" t{n}" for n in range(400)])), delay_each=0.02)
    await stop_mid_answer(session, upstream)

"""In-process Python agents named in BROOK_AGENTS, and the adapter that runs a blocking agent of seed 002's shape
(``process_query(message, context, progress_callback)``) as a Brook agent (docs/agents.md)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.test import AsyncClient
from pytest_django import Settings
from rest_framework.test import APIClient

from chat.models import Message, ThoughtStep
from streaming.agents.base import Agent, Emitter, Turn
from streaming.agents.registry import check_configured, configured_factory
from streaming.agents.sync import AgentStopped, answer_text
from tenants.models import Tenant
from tenants.services import tenant_update
from tests.conftest import SessionInfo, eventually

pytestmark = [pytest.mark.django_db(transaction=True)]

HERE = "tests.streaming.agents.test_sync"


def process_query(message: str, context: dict[str, Any], progress_callback: Any) -> dict[str, Any]:
    """A blocking agent as seed 002 has it: two stages reported, then a result."""
    progress_callback("intent_parsed", {"intent": "weather", "turns_before": len(context["history"])})
    progress_callback("insight_generated", "Sunny, 21 °C")
    return {"answer": f"You asked: {message}", "insight": "sunny"}


def failing_query(message: str, context: dict[str, Any], progress_callback: Any) -> str:
    progress_callback("started")
    raise RuntimeError("the legacy agent broke")


release = threading.Event()
reached: list[str] = []


def stoppable_query(message: str, context: dict[str, Any], progress_callback: Any) -> str:
    progress_callback("first_stage")
    reached.append("waiting")
    release.wait(timeout=10)
    try:
        progress_callback("second_stage")  # Stop was pressed meanwhile: this raises
    except AgentStopped:
        reached.append("stopped")
        raise
    return "never"


class ClassAgent(Agent):
    name = "class-agent"

    async def run(self, conversation: list[Turn], emit: Emitter) -> None:  # type: ignore[override]
        await emit.text_delta("from a class")


@pytest.fixture
def configured(settings: Settings, tenant: Tenant) -> Tenant:
    settings.BROOK_AGENTS = {
        "legacy": f"sync:{HERE}.process_query",
        "broken": f"sync:{HERE}.failing_query",
        "stoppable": f"sync:{HERE}.stoppable_query",
        "classy": f"{HERE}.ClassAgent",
    }
    return tenant


def send(api: APIClient, session: SessionInfo, mode: str = "batch") -> Any:
    return api.post(session.messages_url, {"content": "Weather in Lyon?", "mode": mode}, format="json", **session.auth)


def test_a_blocking_agents_progress_becomes_steps_and_its_result_the_answer(
    api: APIClient, session: SessionInfo, configured: Tenant
) -> None:
    tenant_update(tenant=configured, agent="legacy")

    reply = send(api, session).json()

    assert (reply["status"], reply["content"]) == ("completed", "You asked: Weather in Lyon?")
    assert [(s["title"], s["status"]) for s in reply["steps"]] == [
        ("Intent parsed", "completed"),
        ("Insight generated", "completed"),
    ]
    assert reply["steps"][0]["metadata"] == {
        "stage": "intent_parsed",
        "payload": {"intent": "weather", "turns_before": 0},
    }
    assert reply["steps"][1]["detail"] == "Sunny, 21 °C"


def test_a_blocking_agent_that_raises_fails_the_reply(api: APIClient, session: SessionInfo, configured: Tenant) -> None:
    tenant_update(tenant=configured, agent="broken")

    reply = send(api, session).json()

    assert (reply["status"], reply["error"]["code"]) == ("failed", "AGENT_ERROR")
    assert "broke" not in reply["error"]["message"]  # the agent's own text goes to the log, not the visitor
    assert [s["title"] for s in reply["steps"]] == ["Started"]


async def test_stop_reaches_a_blocking_agent_at_its_next_callback(session: SessionInfo, configured: Tenant) -> None:
    await sync_to_async(tenant_update)(tenant=configured, agent="stoppable")
    release.clear()
    reached.clear()
    client = AsyncClient()
    auth = {"Authorization": f"Bearer {session.token}"}
    sent = await client.post(
        session.messages_url, {"content": "Weather?", "mode": "poll"}, content_type="application/json", headers=auth
    )
    reply_id = sent.json()["id"]

    async def status() -> str:
        return await sync_to_async(lambda: Message.objects.get(id=reply_id).status)()

    await eventually(lambda: asyncio.sleep(0, reached == ["waiting"]), "the agent waiting between its stages")
    stop = await client.post(f"/api/v1/messages/{reply_id}/cancel", headers=auth)
    await eventually(lambda: _is(status(), "cancelled"), "the reply cancelled")
    release.set()
    await eventually(lambda: asyncio.sleep(0, reached == ["waiting", "stopped"]), "the agent told to stop")

    assert stop.status_code in {200, 202}
    titles = await sync_to_async(
        lambda: list(ThoughtStep.objects.filter(message_id=reply_id).values_list("title", flat=True))
    )()
    assert titles == ["First stage"]


async def _is(value: Awaitable[str], expected: str) -> bool:
    return await value == expected


def test_an_agent_class_named_in_settings_answers(api: APIClient, session: SessionInfo, configured: Tenant) -> None:
    tenant_update(tenant=configured, agent="classy")

    assert send(api, session).json()["content"] == "from a class"


def test_a_tenant_may_be_given_only_an_agent_that_exists(configured: Tenant, settings: Settings) -> None:
    tenant_update(tenant=configured, agent="legacy")
    with pytest.raises(ValidationError, match="not an agent here"):
        tenant_update(tenant=configured, agent="nonexistent")

    settings.BROOK_AGENTS = {}
    with pytest.raises(ValidationError):
        tenant_update(tenant=configured, agent="legacy")


@pytest.mark.parametrize(
    ("path", "complaint"),
    [
        ("sync:tests.nowhere.process_query", "does not import"),
        (f"{HERE}.process_query", "not a subclass"),
        (f"sync:{HERE}.HERE", "not a function"),
    ],
)
def test_a_bad_agent_path_stops_the_start(settings: Settings, path: str, complaint: str) -> None:
    configured_factory.cache_clear()
    settings.BROOK_AGENTS = {"bad": path}

    with pytest.raises(ImproperlyConfigured, match=complaint):
        check_configured()


@pytest.mark.parametrize(
    ("result", "answer"),
    [
        ("plain text", "plain text"),
        ({"response": "from response"}, "from response"),
        ({"message": "from message", "other": 1}, "from message"),
        ({"numbers": [1, 2]}, '{\n  "numbers": [\n    1,\n    2\n  ]\n}'),
        (None, ""),
    ],
)
def test_a_result_becomes_the_answer(result: Any, answer: str) -> None:
    assert answer_text(result) == answer

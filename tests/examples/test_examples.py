"""The examples in examples/ answer real visitors: the Node orchestrator against a live Brook, the Python HTTP agent
and the blocking in-process agent (docs/agents.md)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from pytest_django import Settings
from rest_framework.test import APIClient

from tenants.models import Agent, Tenant
from tenants.services import server_key_create, tenant_update
from tests.conftest import ROOT, Server, SessionInfo, free_port, request

pytestmark = [pytest.mark.django_db(transaction=True)]

QUESTION = "How many words does this question have?"


@pytest.mark.stack
@pytest.mark.skipif(shutil.which("node") is None, reason="needs Node 20 (CI installs it)")
def test_the_node_orchestrator_answers_a_visitor(server: Server, tenant: Tenant) -> None:
    Tenant.objects.filter(pk=tenant.pk).update(agent=Agent.EXTERNAL)
    _, key = server_key_create(tenant=tenant, name="node example")
    port = server()
    orchestrator = subprocess.Popen(  # noqa: S603 - our own example
        ["node", str(ROOT / "examples/node-orchestrator/orchestrator.mjs"), "--once"],  # noqa: S607 - node on PATH
        env={**os.environ, "BROOK_URL": f"http://127.0.0.1:{port}", "BROOK_SERVER_KEY": key},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _, created = request(port, "POST", "/api/v1/sessions", {"tenant": tenant.public_key})
        status, accepted = request(
            port,
            "POST",
            f"/api/v1/sessions/{created['id']}/messages",
            {"content": QUESTION, "mode": "poll"},
            created["token"],
        )
        assert status == 202
        out, err = orchestrator.communicate(timeout=60)
    finally:
        orchestrator.kill()

    assert orchestrator.returncode == 0, err
    assert f"answered {accepted['id']}" in out
    _, reply = request(port, "GET", f"/api/v1/messages/{accepted['id']}?after=0", None, created["token"])
    assert reply["status"] == "completed"
    assert reply["content"] == "Your question has 7 words. "
    assert [(s["kind"], s["status"]) for s in reply["steps"]] == [("thinking", "completed"), ("tool_call", "completed")]
    assert reply["done"] is True and reply["events"][-1]["type"] == "message.completed"


@pytest.fixture
def python_http_agent(tenant: Tenant) -> Iterator[str]:
    port = free_port()
    agent = subprocess.Popen(
        [sys.executable, "-m", "examples.python_agents.http_agent"],
        cwd=ROOT,
        env={**os.environ, "PORT": str(port), "SIGNING_SECRET": tenant.agent_signing_secret},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert agent.stdout is not None
    assert "Listening" in agent.stdout.readline()  # it prints once it is listening
    yield f"http://127.0.0.1:{port}/brook"
    agent.terminate()
    agent.wait(timeout=10)


def send(api: APIClient, session: SessionInfo) -> dict[str, Any]:
    response = api.post(session.messages_url, {"content": QUESTION, "mode": "batch"}, format="json", **session.auth)
    assert response.status_code == 200, response.content
    body: dict[str, Any] = response.json()
    return body


def test_the_python_http_agent_answers_a_visitor(
    api: APIClient, session: SessionInfo, tenant: Tenant, python_http_agent: str
) -> None:
    tenant_update(tenant=tenant, agent=Agent.HTTP, agent_url=python_http_agent)

    reply = send(api, session)

    assert (reply["status"], reply["content"]) == ("completed", "You wrote 7 words. ")
    assert reply["steps"][1]["metadata"]["result"] == {"words": 7}


def test_the_blocking_legacy_agent_answers_a_visitor(
    api: APIClient, session: SessionInfo, tenant: Tenant, settings: Settings
) -> None:
    settings.BROOK_AGENTS = {"legacy": "sync:examples.python_agents.legacy_agent.process_query"}
    tenant_update(tenant=tenant, agent="legacy")

    reply = send(api, session)

    assert (reply["status"], reply["content"]) == ("completed", "That was a question of 7 words.")
    assert [s["title"] for s in reply["steps"]] == ["Intent parsed", "Insight generated"]

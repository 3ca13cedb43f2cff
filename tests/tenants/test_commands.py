"""`manage.py tenants` and `manage.py brook_setup`."""

from __future__ import annotations

import io
import json
import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from pytest_django import Settings

from tenants.models import Tenant

pytestmark = pytest.mark.django_db


def run(*args: str) -> Any:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_create_prints_the_tenant_with_its_public_key() -> None:
    body = json.loads(
        run("tenants", "create", "--name", "Acme", "--origins", "https://acme.example", "--streaming-percentage", "25")
    )

    tenant = Tenant.objects.get(public_key=body["public_key"])
    assert (tenant.name, tenant.streaming_enabled, tenant.streaming_percentage) == ("Acme", True, 25)
    assert body["allowed_origins"] == ["https://acme.example"]
    assert body["agent"] == "demo"


def test_list_prints_every_tenant(tenant: Tenant, other_tenant: Tenant) -> None:
    assert [t["name"] for t in json.loads(run("tenants", "list"))] == ["Acme Shop", "Globex"]


def test_set_changes_typed_fields(tenant: Tenant) -> None:
    run(
        "tenants",
        "set",
        tenant.public_key,
        "streaming_percentage=40",
        "streaming_enabled=false",
        "allowed_origins=https://a.example,https://b.example",
        "double_texting=enqueue",
    )

    tenant.refresh_from_db()
    assert (tenant.streaming_percentage, tenant.streaming_enabled) == (40, False)
    assert tenant.allowed_origins == ["https://a.example", "https://b.example"]
    assert tenant.double_texting == "enqueue"


@pytest.mark.parametrize(
    "assignment",
    ["colour=blue", "streaming_percentage=many", "streaming_percentage=150", "streaming_enabled=perhaps", "nonsense"],
)
def test_set_refuses_bad_input_and_changes_nothing(tenant: Tenant, assignment: str) -> None:
    with pytest.raises(CommandError):
        run("tenants", "set", tenant.public_key, "max_message_length=10", assignment)

    tenant.refresh_from_db()
    assert tenant.max_message_length == 8000


def test_set_for_an_unknown_key_fails() -> None:
    with pytest.raises(CommandError, match="No tenant"):
        run("tenants", "set", "missing", "streaming_percentage=1")


def test_brook_setup_creates_the_demo_tenant_and_prints_an_admin_password_once(settings: Settings) -> None:
    settings.DEBUG = True

    first = run("brook_setup")
    second = run("brook_setup")

    password = re.search(r"admin / (\S+)", first)
    assert password is not None
    assert User.objects.get(username="admin").check_password(password.group(1))
    assert "admin /" not in second
    assert Tenant.objects.filter(public_key="demo").count() == 1


def test_brook_setup_makes_no_admin_without_debug(settings: Settings) -> None:
    settings.DEBUG = False

    run("brook_setup")

    assert not User.objects.exists()
    assert Tenant.objects.filter(public_key="demo").exists()


def test_set_selects_the_llm_agent_and_names_a_secret_not_a_key(tenant: Tenant) -> None:
    body = json.loads(
        run(
            "tenants",
            "set",
            tenant.public_key,
            "agent=llm",
            "llm_model=qwen3:8b",
            "llm_api_key_secret=ACME_KEY",
            "llm_temperature=0.2",
        )
    )

    assert body["agent"] == "llm"
    assert body["llm"]["model"] == "qwen3:8b" and body["llm"]["api_key_secret"] == "ACME_KEY"
    assert body["llm"]["temperature"] == 0.2
    with pytest.raises(CommandError):
        run("tenants", "set", tenant.public_key, "llm_api_key_secret=sk-live key with spaces")


def test_create_can_choose_the_llm_agent() -> None:
    body = json.loads(run("tenants", "create", "--name", "Model shop", "--agent", "llm"))

    assert body["agent"] == "llm"
    assert Tenant.objects.get(public_key=body["public_key"]).agent == "llm"

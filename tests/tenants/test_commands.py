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

# A fixed key for the shared tenant, so that command lines in these tests read the same every run. (Keys made before
# new_public_key() stopped starting with "-" need a "--" before them; see the double-dash test.)
FIXED_KEY = "acme-shop-widget-key-0001"


@pytest.fixture
def tenant(tenant: Tenant) -> Tenant:
    Tenant.objects.filter(pk=tenant.pk).update(public_key=FIXED_KEY)
    tenant.refresh_from_db()
    return tenant


def run(*args: str) -> str:
    out = io.StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def run_json(*args: str) -> Any:
    return json.loads(run(*args))


def test_create_prints_the_tenant_with_its_public_key_and_stores_it() -> None:
    body = run_json(
        "tenants",
        "create",
        "--name",
        "Acme",
        "--origins",
        "https://Acme.example:443/",
        "https://shop.acme.example",
        "--streaming-percentage",
        "25",
        "--agent",
        "demo",
    )

    tenant = Tenant.objects.get(public_key=body["public_key"])
    assert len(body["public_key"]) >= 20
    assert (tenant.name, tenant.slug, tenant.agent) == ("Acme", "acme", "demo")
    assert (tenant.streaming_enabled, tenant.streaming_percentage) == (True, 25)
    assert tenant.allowed_origins == ["https://acme.example", "https://shop.acme.example"]
    assert body["allowed_origins"] == tenant.allowed_origins
    assert (body["id"], body["streaming_enabled"], body["streaming_percentage"]) == (tenant.pk, True, 25)


def test_create_without_a_percentage_leaves_streaming_off() -> None:
    body = run_json("tenants", "create", "--name", "Quiet")

    assert (body["streaming_enabled"], body["streaming_percentage"], body["allowed_origins"]) == (False, 0, [])
    assert body["agent"] == "demo"


def test_create_with_streaming_but_no_percentage_enables_it_for_nobody_yet() -> None:
    body = run_json("tenants", "create", "--name", "Ready", "--streaming")

    assert (body["streaming_enabled"], body["streaming_percentage"]) == (True, 0)


def test_create_can_choose_the_llm_agent() -> None:
    body = run_json("tenants", "create", "--name", "Model shop", "--agent", "llm")

    assert body["agent"] == "llm"
    assert Tenant.objects.get(public_key=body["public_key"]).agent == "llm"


# The subcommands' parsers are plain argparse parsers (`parser_class=ArgumentParser`), so a value argparse itself
# refuses exits the process (SystemExit 2) under call_command instead of raising CommandError.
@pytest.mark.parametrize(
    "extra",
    [
        ["--streaming-percentage", "150"],
        ["--origins", "https://acme.example/widget"],
        ["--streaming-percentage", "many"],
        ["--agent", "skynet"],
    ],
    ids=["percentage-over-100", "origin-with-a-path", "percentage-not-a-number", "unknown-agent"],
)
def test_create_refuses_bad_input_and_creates_nothing(extra: list[str]) -> None:
    with pytest.raises(CommandError):
        run("tenants", "create", "--name", "Acme", *extra)

    assert not Tenant.objects.exists()


def test_list_prints_every_tenant(tenant: Tenant, other_tenant: Tenant) -> None:
    body = run_json("tenants", "list")

    assert [(t["name"], t["public_key"]) for t in body] == [
        ("Acme Shop", tenant.public_key),
        ("Globex", other_tenant.public_key),
    ]


def test_list_prints_an_empty_list_when_there_are_no_tenants() -> None:
    assert run_json("tenants", "list") == []


def test_set_changes_typed_fields(tenant: Tenant) -> None:
    body = run_json(
        "tenants",
        "set",
        tenant.public_key,
        "streaming_percentage=40",
        "streaming_enabled=false",
        "allowed_origins=https://a.example, https://B.example:443",
        "double_texting=enqueue",
    )

    tenant.refresh_from_db()
    assert (tenant.streaming_percentage, tenant.streaming_enabled) == (40, False)
    assert tenant.allowed_origins == ["https://a.example", "https://b.example"]
    assert tenant.double_texting == "enqueue"
    assert body["public_key"] == tenant.public_key and body["streaming_percentage"] == 40


def test_set_with_an_empty_origin_list_clears_the_origins(tenant: Tenant) -> None:
    run("tenants", "set", tenant.public_key, "allowed_origins=")

    tenant.refresh_from_db()
    assert tenant.allowed_origins == []


def test_set_selects_the_llm_agent_and_names_a_secret_not_a_key(tenant: Tenant) -> None:
    body = run_json(
        "tenants",
        "set",
        tenant.public_key,
        "agent=llm",
        "llm_model=qwen3:8b",
        "llm_api_key_secret=ACME_KEY",
        "llm_temperature=0.2",
    )

    assert body["agent"] == "llm"
    assert body["llm"]["model"] == "qwen3:8b" and body["llm"]["api_key_secret"] == "ACME_KEY"
    assert body["llm"]["temperature"] == 0.2
    with pytest.raises(CommandError):
        run("tenants", "set", tenant.public_key, "llm_api_key_secret=sk-live key with spaces")
    tenant.refresh_from_db()
    assert tenant.llm_api_key_secret == "ACME_KEY"


@pytest.mark.parametrize(
    "assignment",
    [
        "colour=blue",
        "public_key=mine",
        "streaming_percentage=many",
        "streaming_percentage=150",
        "streaming_enabled=perhaps",
        "llm_temperature=warm",
        "allowed_origins=https://a.example/path",
        "nonsense",
    ],
)
def test_set_refuses_bad_input_and_changes_nothing(tenant: Tenant, assignment: str) -> None:
    key = tenant.public_key

    with pytest.raises(CommandError):
        run("tenants", "set", tenant.public_key, "max_message_length=10", assignment)

    tenant.refresh_from_db()
    assert (tenant.public_key, tenant.max_message_length, tenant.streaming_percentage) == (key, 8000, 100)
    assert tenant.streaming_enabled and tenant.allowed_origins == ["https://shop.example.com"]


def test_set_for_an_unknown_key_fails_and_changes_nothing(tenant: Tenant) -> None:
    with pytest.raises(CommandError, match="No tenant"):
        run("tenants", "set", "missing", "streaming_percentage=1")

    tenant.refresh_from_db()
    assert tenant.streaming_percentage == 100


def test_set_accepts_a_key_that_starts_with_a_dash_after_a_double_dash() -> None:
    tenant = Tenant.objects.get(pk=run_json("tenants", "create", "--name", "Dash")["id"])
    Tenant.objects.filter(pk=tenant.pk).update(public_key="-h72B4Lmv5fTuUuOEbiHAQ")  # a real new_public_key() value

    run("tenants", "set", "--", "-h72B4Lmv5fTuUuOEbiHAQ", "streaming_percentage=7")

    tenant.refresh_from_db()
    assert tenant.streaming_percentage == 7


def test_brook_setup_creates_the_demo_tenant_and_prints_an_admin_password_once(settings: Settings) -> None:
    settings.DEBUG = True

    first = run("brook_setup")
    second = run("brook_setup")

    password = re.search(r"admin / (\S+)", first)
    assert password is not None
    admin = User.objects.get(username="admin")
    assert admin.check_password(password.group(1))
    assert admin.is_superuser and admin.is_staff
    assert password.group(1) not in second and "admin /" not in second
    assert User.objects.count() == 1
    demo = Tenant.objects.get(public_key="demo")
    assert (demo.streaming_enabled, demo.streaming_percentage) == (True, 100)


def test_brook_setup_leaves_an_existing_admin_password_alone(settings: Settings) -> None:
    settings.DEBUG = True
    User.objects.create_superuser(username="admin", email="", password="chosen-by-the-operator")

    out = run("brook_setup")

    assert "admin /" not in out
    assert User.objects.get(username="admin").check_password("chosen-by-the-operator")


def test_brook_setup_makes_no_admin_without_debug(settings: Settings) -> None:
    settings.DEBUG = False

    out = run("brook_setup")

    assert not User.objects.exists()
    assert "admin /" not in out
    assert Tenant.objects.filter(public_key="demo").count() == 1

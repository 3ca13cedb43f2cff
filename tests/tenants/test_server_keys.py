"""Server keys for the agent API: made once and shown once, stored hashed, scoped to their tenant, revoked at once;
from the admin, the command line and the key-check route (docs/agents.md, "Server keys")."""

from __future__ import annotations

import io
import json
import re
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from rest_framework.test import APIClient

from tenants.keys import KEY_LENGTH, key_hash, key_prefix
from tenants.models import ServerKey, Tenant, TenantChange
from tenants.services import server_key_create, server_key_revoke
from tests.conftest import assert_answers_like_a_missing_object, tenant_staff_client

pytestmark = pytest.mark.django_db

KEY_ROUTE = "/api/v1/agent/key"


def check(api: APIClient, key: str, origin: str = "") -> tuple[int, dict[str, Any]]:
    extra = {"HTTP_ORIGIN": origin} if origin else {}
    response = api.get(KEY_ROUTE, HTTP_AUTHORIZATION=f"Bearer {key}", **extra)  # type: ignore[arg-type]
    return response.status_code, response.json()


def test_a_key_is_shown_once_and_stored_only_as_a_hash(tenant: Tenant) -> None:
    key, shown = server_key_create(tenant=tenant, name="production orchestrator")

    stored = ServerKey.objects.get(pk=key.pk)
    assert len(shown) == KEY_LENGTH and shown.startswith(stored.prefix + "_")
    assert re.fullmatch(r"bsk_[a-z0-9]{8}", stored.prefix)
    assert stored.secret_hash == key_hash(shown) and shown not in {stored.prefix, stored.secret_hash}
    assert TenantChange.objects.filter(tenant=tenant, changes__server_key__1__startswith=stored.prefix).exists()


def test_the_key_opens_its_own_tenant_and_notes_its_use(api: APIClient, tenant: Tenant) -> None:
    key, shown = server_key_create(tenant=tenant, name="orchestrator")

    status, body = check(api, shown)

    assert status == 200
    assert body["tenant"] == {
        "name": tenant.name,
        "slug": tenant.slug,
        "public_key": tenant.public_key,
        "agent": tenant.agent,
    }
    assert body["key"]["prefix"] == key.prefix
    assert ServerKey.objects.get(pk=key.pk).last_used_at is not None


def test_an_outsiders_key_opens_only_the_outsiders_tenant(api: APIClient, tenant: Tenant, other_tenant: Tenant) -> None:
    _, ours = server_key_create(tenant=tenant, name="ours")
    _, theirs = server_key_create(tenant=other_tenant, name="theirs")

    assert check(api, ours)[1]["tenant"]["slug"] == tenant.slug
    assert check(api, theirs)[1]["tenant"]["slug"] == other_tenant.slug


def test_a_revoked_key_opens_nothing_from_that_moment(api: APIClient, tenant: Tenant) -> None:
    key, shown = server_key_create(tenant=tenant, name="leaked")
    assert check(api, shown)[0] == 200

    assert server_key_revoke(key=key) is True
    assert server_key_revoke(key=key) is False  # idempotent

    status, body = check(api, shown)
    assert (status, body["code"]) == (401, "AUTH_INVALID")


@pytest.mark.parametrize(
    "authorization",
    [
        "Bearer bsk_00000000_" + "A" * 43,  # well-formed, unknown
        "Bearer bsk_short",
        "Bearer not-a-key-at-all",
        "Basic dXNlcjpwdw==",
        "Bearer ",
    ],
)
def test_a_bad_key_is_a_401_json_error(api: APIClient, tenant: Tenant, authorization: str) -> None:
    response = api.get(KEY_ROUTE, HTTP_AUTHORIZATION=authorization)

    assert (response.status_code, response.json()["code"]) == (401, "AUTH_INVALID")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_no_key_is_a_401_auth_required(api: APIClient) -> None:
    response = api.get(KEY_ROUTE)

    assert (response.status_code, response.json()["code"]) == (401, "AUTH_REQUIRED")


def test_a_key_with_the_right_prefix_and_a_wrong_secret_opens_nothing(api: APIClient, tenant: Tenant) -> None:
    key, shown = server_key_create(tenant=tenant, name="real")
    forged = shown[:-1] + ("A" if shown[-1] != "A" else "B")

    assert key_prefix(forged) == key.prefix
    assert check(api, forged)[0] == 401


def test_a_deactivated_tenants_keys_open_nothing(api: APIClient, tenant: Tenant) -> None:
    _, shown = server_key_create(tenant=tenant, name="orchestrator")
    Tenant.objects.filter(pk=tenant.pk).update(is_active=False)

    assert check(api, shown)[0] == 401


def test_browsers_are_refused_even_with_a_valid_key_and_an_allowed_origin(api: APIClient, tenant: Tenant) -> None:
    _, shown = server_key_create(tenant=tenant, name="orchestrator")
    origin = tenant.allowed_origins[0]

    status, body = check(api, shown, origin=origin)
    preflight = api.options(KEY_ROUTE, HTTP_ORIGIN=origin, HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET")

    assert (status, body["code"]) == (403, "ORIGIN_NOT_ALLOWED")
    assert preflight.status_code == 403 and "Access-Control-Allow-Origin" not in preflight


# --- The command line -----------------------------------------------------------------------------------------------


def run_json(*args: str) -> object:
    out = io.StringIO()
    call_command("tenants", "keys", *args, stdout=out, stderr=io.StringIO())
    return json.loads(out.getvalue())


def test_the_command_makes_lists_and_revokes_keys(api: APIClient, tenant: Tenant) -> None:
    made = run_json("create", tenant.public_key, "--name", "nightly job")
    assert isinstance(made, dict)
    assert check(api, made["key"])[0] == 200

    listed = run_json("list", tenant.public_key)
    revoked = run_json("revoke", made["prefix"])

    assert isinstance(listed, list) and [item["prefix"] for item in listed] == [made["prefix"]]
    assert all("key" not in item for item in listed)
    assert isinstance(revoked, dict) and revoked["revoked_at"] is not None
    assert check(api, made["key"])[0] == 401


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("create", "no-such-tenant", "--name", "x"), "No tenant"),
        (("revoke", "bsk_nothere"), "No server key"),
        (("list", "no-such-tenant"), "No tenant"),
    ],
)
def test_the_command_refuses_unknown_tenants_and_keys(args: tuple[str, ...], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        run_json(*args)


def test_the_command_refuses_a_blank_name(tenant: Tenant) -> None:
    with pytest.raises(CommandError, match="name"):
        run_json("create", tenant.public_key, "--name", "  ")
    assert not ServerKey.objects.exists()


# --- The admin ------------------------------------------------------------------------------------------------------

CHANGELIST = "/admin/tenants/serverkey/"


def test_the_admin_shows_a_new_key_once_and_never_again(staff_client: Client, tenant: Tenant) -> None:
    response = staff_client.post(f"{CHANGELIST}add/", {"tenant": tenant.pk, "name": "from the admin"})

    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    shown = re.search(rb'id="server-key"[^>]*>(bsk_[^<]+)<', response.content)
    assert shown is not None
    key = ServerKey.objects.get(tenant=tenant)
    assert key.secret_hash == key_hash(shown.group(1).decode())
    page = staff_client.get(f"{CHANGELIST}{key.pk}/change/")
    assert page.status_code == 200 and shown.group(1) not in page.content and key.prefix.encode() in page.content


def test_the_admin_revokes_keys_and_never_deletes_them(staff_client: Client, tenant: Tenant) -> None:
    key, _ = server_key_create(tenant=tenant, name="old")

    staff_client.post(CHANGELIST, {"action": "revoke", "_selected_action": [key.pk]})

    assert ServerKey.objects.get(pk=key.pk).revoked_at is not None
    assert staff_client.get(f"{CHANGELIST}{key.pk}/delete/").status_code == 403


def test_tenant_staff_see_and_make_keys_for_their_own_tenant_only(tenant: Tenant, other_tenant: Tenant) -> None:
    client = tenant_staff_client(tenant)
    theirs, _ = server_key_create(tenant=other_tenant, name="theirs")

    listing = client.get(CHANGELIST)
    foreign_add = client.post(f"{CHANGELIST}add/", {"tenant": other_tenant.pk, "name": "sneaky"})

    assert listing.status_code == 200 and theirs.prefix.encode() not in listing.content
    assert_answers_like_a_missing_object(client.get(f"{CHANGELIST}{theirs.pk}/change/"))
    assert foreign_add.status_code == 200 and b"errorlist" in foreign_add.content  # not a choice they have
    assert not ServerKey.objects.filter(tenant=other_tenant, name="sneaky").exists()

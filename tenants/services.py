"""Writes to tenants. Views, the admin, management commands and tests all call these functions (docs/tenants.md)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.utils.text import slugify

from tenants.models import Agent, ChangeSource, Tenant, TenantChange
from tenants.origins import origins_changed

# The fields an operator may change with `tenants set` (and the admin); everything else is managed by Brook.
EDITABLE_FIELDS = (
    "name",
    "slug",
    "is_active",
    "allowed_origins",
    "streaming_enabled",
    "streaming_percentage",
    "fallback_delivery",
    "thought_visibility",
    "agent",
    "messages_per_minute",
    "tenant_messages_per_minute",
    "sessions_per_ip_per_minute",
    "max_streams_per_session",
    "max_concurrent_streams",
    "max_stream_seconds",
    "max_message_length",
    "double_texting",
    "cancel_on_disconnect",
    "log_retention_days",
    "retention_days",
    "llm_provider",
    "llm_model",
    "llm_base_url",
    "llm_system_prompt",
    "llm_temperature",
    "llm_max_tokens",
    "llm_api_key_secret",
    "llm_tools_enabled",
    "llm_thinking_budget",
    "llm_reasoning_starts_open",
)

DEMO_PUBLIC_KEY = "demo"
DEMO_ORIGINS = ["http://127.0.0.1:8000", "http://localhost:8000"]


def _unique_slug(name: str) -> str:
    base = slugify(name)[:70] or "tenant"
    slug, n = base, 2
    while Tenant.objects.filter(slug=slug).exists():
        slug, n = f"{base}-{n}", n + 1
    return slug


def _json_value(value: Any) -> Any:
    return value if value is None or isinstance(value, bool | int | float | str | list | dict) else str(value)


@transaction.atomic
def tenant_create(
    *,
    name: str,
    public_key: str | None = None,
    actor: User | None = None,
    source: ChangeSource = ChangeSource.SYSTEM,
    **fields: Any,
) -> Tenant:
    """Create a tenant with a fresh unguessable public key (unless one is given), validated like the admin does.

    ``fields`` are any of ``EDITABLE_FIELDS``; the rest take the model's defaults. The tenant's history starts with
    the values it was given.
    """
    unknown = set(fields) - set(EDITABLE_FIELDS)
    if unknown:
        raise TypeError(f"Not tenant fields: {', '.join(sorted(unknown))}")
    tenant = Tenant(name=name, **fields)
    if not tenant.slug:
        tenant.slug = _unique_slug(name)
    if public_key is not None:
        tenant.public_key = public_key
    tenant.full_clean()
    tenant.save()
    given = {field: [None, _json_value(getattr(tenant, field))] for field in ("name", "slug", *fields)}
    TenantChange.objects.create(tenant=tenant, actor=actor, source=source, changes=given)
    transaction.on_commit(origins_changed)
    return tenant


@transaction.atomic
def tenant_update(
    *,
    tenant: Tenant,
    actor: User | None = None,
    source: ChangeSource = ChangeSource.SYSTEM,
    **changes: Any,
) -> Tenant:
    """Change a tenant's editable fields; validates everything, saves only what changed and records the change
    (who, from where, old and new values) in the tenant's history. New sessions see the change at once: nothing
    caches a tenant's flags between requests."""
    unknown = set(changes) - set(EDITABLE_FIELDS)
    if unknown:
        raise TypeError(f"Not editable: {', '.join(sorted(unknown))}")
    before = {field: getattr(tenant, field) for field in changes}
    for field, value in changes.items():
        setattr(tenant, field, value)
    tenant.full_clean()
    # Compare after full_clean, which normalizes (origins are sorted and lower-cased).
    changed = {
        field: [_json_value(before[field]), _json_value(getattr(tenant, field))]
        for field in changes
        if before[field] != getattr(tenant, field)
    }
    if not changed:
        return tenant
    tenant.save(update_fields=[*changed, "updated_at"])
    TenantChange.objects.create(tenant=tenant, actor=actor, source=source, changes=changed)
    if {"allowed_origins", "is_active"} & set(changed):
        transaction.on_commit(origins_changed)
    return tenant


def tenant_ensure_demo() -> tuple[Tenant, bool]:
    """The demo tenant that `make run` serves: key `demo`, local origins, streaming for everyone, demo agent."""
    tenant = Tenant.objects.filter(public_key=DEMO_PUBLIC_KEY).first()
    if tenant is not None:
        return tenant, False
    tenant = tenant_create(
        name="Brook demo",
        public_key=DEMO_PUBLIC_KEY,
        allowed_origins=DEMO_ORIGINS,
        streaming_enabled=True,
        streaming_percentage=100,
        agent=Agent.DEMO,
    )
    return tenant, True

"""Writes to tenants. Views, the admin, management commands and tests all call these functions (docs/tenants.md)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from tenants.keys import new_key
from tenants.models import Agent, ChangeSource, ServerKey, Tenant, TenantChange
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
    "agent_url",
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


# A key's last use is written at most this often: one write a minute, not one per request.
KEY_USE_PRECISION = timedelta(minutes=1)


def server_key_create(
    *, tenant: Tenant, name: str, actor: User | None = None, source: ChangeSource = ChangeSource.SYSTEM
) -> tuple[ServerKey, str]:
    """A new server key for ``tenant`` and the key itself, which is shown this once and never stored; recorded in
    the tenant's change history. Raises ValidationError for a blank or over-long name."""
    name = name.strip()
    if not name or len(name) > 100:
        raise ValidationError({"name": "A key needs a name of 1 to 100 characters."})
    for _attempt in range(3):  # a prefix is 8 random characters of 36: a clash is rare, and retried
        made = new_key()
        try:
            with transaction.atomic():
                key = ServerKey.objects.create(
                    tenant=tenant, name=name, prefix=made.prefix, secret_hash=made.secret_hash, created_by=actor
                )
                TenantChange.objects.create(
                    tenant=tenant, actor=actor, source=source, changes={"server_key": [None, f"{made.prefix} {name}"]}
                )
        except IntegrityError:
            continue
        return key, made.key
    raise RuntimeError("Could not find a free server key prefix")


def server_key_revoke(*, key: ServerKey, actor: User | None = None, source: ChangeSource = ChangeSource.SYSTEM) -> bool:
    """Revoke ``key`` from now on; False if it was revoked already. Recorded in the tenant's change history."""
    with transaction.atomic():
        revoked = ServerKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        if revoked:
            TenantChange.objects.create(
                tenant_id=key.tenant_id,
                actor=actor,
                source=source,
                changes={"server_key": [f"{key.prefix} {key.name}", f"{key.prefix} revoked"]},
            )
    key.refresh_from_db(fields=["revoked_at"])
    return bool(revoked)


def server_key_touch(*, key: ServerKey) -> None:
    """Note that ``key`` was just used (to the minute)."""
    now = timezone.now()
    if key.last_used_at is not None and now - key.last_used_at < KEY_USE_PRECISION:
        return
    ServerKey.objects.filter(pk=key.pk).update(last_used_at=now)
    key.last_used_at = now

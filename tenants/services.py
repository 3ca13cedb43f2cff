"""Writes to tenants. Views, the admin, management commands and tests all call these functions."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils.text import slugify

from tenants.models import Agent, Tenant

# The fields an operator may change with `tenants set` (and the admin); everything else is managed by Brook.
EDITABLE_FIELDS = (
    "name",
    "slug",
    "is_active",
    "allowed_origins",
    "streaming_enabled",
    "streaming_percentage",
    "agent",
    "messages_per_minute",
    "max_stream_seconds",
    "max_message_length",
    "double_texting",
    "cancel_on_disconnect",
    "log_retention_days",
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


@transaction.atomic
def tenant_create(*, name: str, public_key: str | None = None, **fields: Any) -> Tenant:
    """Create a tenant with a fresh unguessable public key (unless one is given), validated like the admin does.

    ``fields`` are any of ``EDITABLE_FIELDS``; the rest take the model's defaults.
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
    return tenant


@transaction.atomic
def tenant_update(*, tenant: Tenant, **changes: Any) -> Tenant:
    """Change a tenant's editable fields; validates everything and saves only what changed."""
    unknown = set(changes) - set(EDITABLE_FIELDS)
    if unknown:
        raise TypeError(f"Not editable: {', '.join(sorted(unknown))}")
    for field, value in changes.items():
        setattr(tenant, field, value)
    tenant.full_clean()
    tenant.save(update_fields=[*changes, "updated_at"])
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

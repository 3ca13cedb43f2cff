"""`manage.py tenants create|list|set|keys`: manage tenants and their server keys from scripts, without the admin
(docs/tenants.md, docs/agents.md)."""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import models

from tenants.models import Agent, ChangeSource, ServerKey, Tenant, agent_choices
from tenants.services import (
    EDITABLE_FIELDS,
    server_key_create,
    server_key_revoke,
    tenant_create,
    tenant_update,
)

# How `set KEY field=value` parses a value: read off the model, so a new field needs no edit here.
_BOOLEAN_FIELDS = {
    f.name for f in Tenant._meta.concrete_fields if isinstance(f, models.BooleanField) and f.name in EDITABLE_FIELDS
}
_INTEGER_FIELDS = {
    f.name for f in Tenant._meta.concrete_fields if isinstance(f, models.IntegerField) and f.name in EDITABLE_FIELDS
}


def tenant_json(tenant: Tenant) -> dict[str, Any]:
    return {
        "id": tenant.pk,
        "name": tenant.name,
        "slug": tenant.slug,
        "public_key": tenant.public_key,
        "is_active": tenant.is_active,
        "allowed_origins": tenant.allowed_origins,
        "streaming_enabled": tenant.streaming_enabled,
        "streaming_percentage": tenant.streaming_percentage,
        "fallback_delivery": tenant.fallback_delivery,
        "thought_visibility": tenant.thought_visibility,
        "agent": tenant.agent,
        "agent_url": tenant.agent_url,
        "agent_signing_secret": tenant.agent_signing_secret,
        "messages_per_minute": tenant.messages_per_minute,
        "tenant_messages_per_minute": tenant.tenant_messages_per_minute,
        "sessions_per_ip_per_minute": tenant.sessions_per_ip_per_minute,
        "max_streams_per_session": tenant.max_streams_per_session,
        "max_concurrent_streams": tenant.max_concurrent_streams,
        "max_stream_seconds": tenant.max_stream_seconds,
        "max_message_length": tenant.max_message_length,
        "double_texting": tenant.double_texting,
        "cancel_on_disconnect": tenant.cancel_on_disconnect,
        "log_retention_days": tenant.log_retention_days,
        "retention_days": tenant.retention_days,
        "llm": {
            "provider": tenant.llm_provider,
            "model": tenant.llm_model,
            "base_url": tenant.llm_base_url,
            "api_key_secret": tenant.llm_api_key_secret,
            "temperature": tenant.llm_temperature,
            "max_tokens": tenant.llm_max_tokens,
            "thinking_budget": tenant.llm_thinking_budget,
            "tools_enabled": tenant.llm_tools_enabled,
            "reasoning_starts_open": tenant.llm_reasoning_starts_open,
        },
    }


def parse_assignment(assignment: str) -> tuple[str, Any]:
    """``field=value`` → (field, typed value); origins take a comma-separated list."""
    field, sep, raw = assignment.partition("=")
    if not sep:
        raise CommandError(f"{assignment!r} is not field=value.")
    if field not in EDITABLE_FIELDS:
        raise CommandError(f"{field!r} cannot be set; editable fields: {', '.join(EDITABLE_FIELDS)}.")
    if field in _BOOLEAN_FIELDS:
        lowered = raw.strip().lower()
        if lowered not in {"true", "false", "1", "0", "yes", "no", "on", "off"}:
            raise CommandError(f"{field} takes true or false, not {raw!r}.")
        return field, lowered in {"true", "1", "yes", "on"}
    if field in _INTEGER_FIELDS:
        try:
            return field, int(raw)
        except ValueError:
            raise CommandError(f"{field} takes a whole number, not {raw!r}.") from None
    if field == "llm_temperature":
        if raw.strip() == "":
            return field, None
        try:
            return field, float(raw)
        except ValueError:
            raise CommandError(f"{field} takes a number, not {raw!r}.") from None
    if field == "allowed_origins":
        return field, [item.strip() for item in raw.split(",") if item.strip()]
    return field, raw


def key_json(key: ServerKey) -> dict[str, Any]:
    """A server key as `tenants keys` prints it: never the key itself, which exists only when it is made."""
    return {
        "prefix": key.prefix,
        "name": key.name,
        "tenant": key.tenant.public_key,
        "created_at": key.created_at.isoformat(),
        "last_used_at": key.last_used_at.isoformat() if key.last_used_at else None,
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
    }


def _tenant(public_key: str) -> Tenant:
    found = Tenant.objects.filter(public_key=public_key).first()
    if found is None:
        raise CommandError(f"No tenant has public key {public_key!r}.")
    return found


def _validation_message(error: ValidationError) -> str:
    if hasattr(error, "message_dict"):
        return "; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in error.message_dict.items())
    return " ".join(error.messages)


class Command(BaseCommand):
    help = "Create, list and change tenants. Output is JSON."

    def add_arguments(self, parser: CommandParser) -> None:
        actions = parser.add_subparsers(dest="action", required=True)
        create = actions.add_parser("create", help="Create a tenant and print it with its public key.")
        create.add_argument("--name", required=True)
        create.add_argument("--origins", nargs="*", default=[], metavar="URL", help="Allowed widget origins.")
        create.add_argument("--streaming-percentage", type=int, default=None, metavar="P")
        create.add_argument("--streaming", action="store_true", help="Enable streaming (default on when P > 0).")
        create.add_argument("--agent", choices=[name for name, _ in agent_choices()], default=Agent.DEMO)
        actions.add_parser("list", help="List all tenants.")
        change = actions.add_parser("set", help="Change fields: tenants set KEY field=value ...")
        change.add_argument("public_key")
        change.add_argument("assignments", nargs="+", metavar="field=value")
        keys = actions.add_parser("keys", help="Server keys for the agent API: keys create|list|revoke.")
        key_actions = keys.add_subparsers(dest="key_action", required=True)
        key_create = key_actions.add_parser("create", help="Make a key; it is printed this once.")
        key_create.add_argument("public_key")
        key_create.add_argument("--name", required=True, help="What the key is for.")
        key_list = key_actions.add_parser("list", help="A tenant's keys (never the keys themselves).")
        key_list.add_argument("public_key")
        key_revoke = key_actions.add_parser("revoke", help="Revoke a key at once, by its prefix (bsk_...).")
        key_revoke.add_argument("prefix")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        try:
            if action == "create":
                percentage = options["streaming_percentage"]
                tenant = tenant_create(
                    name=options["name"],
                    allowed_origins=options["origins"],
                    streaming_enabled=options["streaming"] or bool(percentage),
                    streaming_percentage=percentage or 0,
                    agent=options["agent"],
                    source=ChangeSource.COMMAND,
                )
                self._print(tenant_json(tenant))
            elif action == "list":
                self._print([tenant_json(tenant) for tenant in Tenant.objects.order_by("id")])
            elif action == "keys":
                self._keys(options)
            else:
                found = _tenant(options["public_key"])
                changes = dict(parse_assignment(item) for item in options["assignments"])
                self._print(tenant_json(tenant_update(tenant=found, source=ChangeSource.COMMAND, **changes)))
        except ValidationError as error:
            raise CommandError(_validation_message(error)) from None

    def _keys(self, options: dict[str, Any]) -> None:
        if options["key_action"] == "create":
            key, shown_once = server_key_create(
                tenant=_tenant(options["public_key"]), name=options["name"], source=ChangeSource.COMMAND
            )
            self._print({**key_json(key), "key": shown_once})
            self.stderr.write("Copy the key now: it is shown this once, and Brook keeps only a hash of it.")
        elif options["key_action"] == "list":
            tenant = _tenant(options["public_key"])
            self._print([key_json(key) for key in tenant.server_keys.select_related("tenant")])
        else:
            found = ServerKey.objects.select_related("tenant").filter(prefix=options["prefix"]).first()
            if found is None:
                raise CommandError(f"No server key has prefix {options['prefix']!r}.")
            server_key_revoke(key=found, source=ChangeSource.COMMAND)
            self._print(key_json(found))

    def _print(self, data: Any) -> None:
        self.stdout.write(json.dumps(data, indent=2))

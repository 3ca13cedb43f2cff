from __future__ import annotations

from django.contrib import admin
from django.db import models

from tenants.models import Tenant


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin[Tenant]):
    """Tenants with their rollout flags editable right in the list."""

    list_display = [
        "name",
        "public_key",
        "is_active",
        "streaming_enabled",
        "streaming_percentage",
        "agent",
        "messages_per_minute",
        "updated_at",
    ]
    list_editable = ["streaming_enabled", "streaming_percentage"]
    list_filter = ["is_active", "streaming_enabled", "agent"]
    search_fields = ["name", "slug", "public_key"]
    readonly_fields = ["created_at", "updated_at"]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    prepopulated_fields = {"slug": ["name"]}
    fieldsets = [
        (None, {"fields": ["name", "slug", "public_key", "is_active", "allowed_origins"]}),
        ("Streaming", {"fields": ["streaming_enabled", "streaming_percentage", "agent", "double_texting"]}),
        (
            "Limits",
            {
                "fields": [
                    "messages_per_minute",
                    "max_stream_seconds",
                    "max_message_length",
                    "cancel_on_disconnect",
                    "log_retention_days",
                ]
            },
        ),
        (
            "Model (agent llm; docs/providers.md)",
            {
                "fields": [
                    "llm_provider",
                    "llm_model",
                    "llm_base_url",
                    "llm_api_key_secret",
                    "llm_system_prompt",
                    "llm_temperature",
                    "llm_max_tokens",
                    "llm_thinking_budget",
                    "llm_tools_enabled",
                    "llm_reasoning_starts_open",
                ]
            },
        ),
        ("History", {"fields": ["created_at", "updated_at"]}),
    ]

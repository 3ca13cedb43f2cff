"""The admin of sessions, messages, thought steps, event logs and fallback reports: read-only records, scoped to the
staff user's tenant (``tenants.admin``; docs/tenants.md, "Admin")."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from chat.models import ChatSession, Event, FallbackReport, Message, ThoughtStep
from tenants.admin import RecordAdmin, TenantFilter, ViewOnlyAdmin


class ReadOnlyInline:
    """Inlines that show history: nothing to add or delete by hand."""

    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class MessageInline(ReadOnlyInline, admin.TabularInline[Message, ChatSession]):
    model = Message
    fk_name = "session"
    fields = readonly_fields = ("created_at", "role", "status", "content", "error_code", "duration_ms")
    ordering = ["created_at", "id"]


class ThoughtStepInline(ReadOnlyInline, admin.TabularInline[ThoughtStep, Message]):
    model = ThoughtStep
    fields = readonly_fields = ("index", "kind", "title", "detail", "status", "started_at", "duration_ms", "metadata")
    ordering = ["index"]
    show_change_link = False


@admin.register(ChatSession)
class ChatSessionAdmin(RecordAdmin[ChatSession]):
    tenant_path = "tenant"
    list_display = ["id", "tenant", "visitor_id", "delivery", "created_at", "last_activity_at"]
    list_filter = [("tenant", TenantFilter), "delivery"]
    search_fields = ["id", "visitor_id"]
    readonly_fields = ["id", "tenant", "visitor_id", "rollout_bucket", "delivery", "created_at", "last_activity_at"]
    list_select_related = ["tenant"]
    date_hierarchy = "created_at"
    inlines = [MessageInline]


@admin.register(Message)
class MessageAdmin(RecordAdmin[Message]):
    tenant_path = "session__tenant"
    list_display = ["id", "session", "role", "status", "error_code", "model", "duration_ms", "created_at"]
    list_filter = ["role", "status", ("session__tenant", TenantFilter)]
    search_fields = ["id", "content", "client_message_id", "session__id"]
    readonly_fields = [
        "id",
        "session",
        "role",
        "reply_to",
        "client_message_id",
        "status",
        "error_code",
        "error_message",
        "model",
        "prompt_tokens",
        "completion_tokens",
        "reasoning_tokens",
        "time_to_first_token_ms",
        "duration_ms",
        "created_at",
        "started_at",
        "finished_at",
        "updated_at",
    ]
    fields = ["content", "reasoning", *readonly_fields]
    list_select_related = ["session"]
    date_hierarchy = "created_at"
    inlines = [ThoughtStepInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Message]:
        return super().get_queryset(request).select_related("session__tenant")


@admin.register(ThoughtStep)
class ThoughtStepAdmin(RecordAdmin[ThoughtStep]):
    tenant_path = "message__session__tenant"
    list_display = ["message", "index", "kind", "title", "status", "duration_ms", "started_at"]
    list_filter = ["kind", "status"]
    search_fields = ["title", "message__id"]
    readonly_fields = ["message"]  # a step never moves to another message (or tenant)
    list_select_related = ["message"]


@admin.register(FallbackReport)
class FallbackReportAdmin(ViewOnlyAdmin[FallbackReport]):
    """Widgets' reports of falling back from one transport to another, as they sent them."""

    tenant_path = "tenant"
    list_display = ["created_at", "tenant", "session", "reason", "code", "from_delivery", "to_delivery"]
    list_filter = ["reason", "code", ("tenant", TenantFilter)]
    search_fields = ["session__id"]
    list_select_related = ["tenant", "session"]
    date_hierarchy = "created_at"


@admin.register(Event)
class EventAdmin(RecordAdmin[Event]):
    """The event log, read-only: it is written only by the runner, the sweeper and cancels (``chat.services``)."""

    tenant_path = "message__session__tenant"
    list_display = ["message", "seq", "type", "created_at"]
    list_filter = ["type"]
    search_fields = ["message__id"]
    list_select_related = ["message"]
    readonly_fields = ["message", "seq", "type", "data", "created_at"]
    ordering = ["-created_at", "-seq"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from streaming.models import Event
from tenants.admin import RecordAdmin


@admin.register(Event)
class EventAdmin(RecordAdmin[Event]):
    """The event log, read-only: it is written only by the runner, the sweeper and cancels."""

    tenant_path = "message__session__tenant"
    list_display = ["message", "seq", "type", "created_at"]
    list_filter = ["type"]
    search_fields = ["message__id"]
    list_select_related = ["message"]
    readonly_fields = ["message", "seq", "type", "data", "created_at"]
    ordering = ["-created_at", "-seq"]

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

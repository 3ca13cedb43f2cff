"""The tenant page of the admin (docs/tenants.md, "Admin"): rollout flags editable in the list, bulk rollout actions,
the rollout preview, recent fallbacks and the change history. Its panels read chat data, so it sits above chat;
the tenant-scoping base classes it builds on are ``tenants.admin``."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin
from django.contrib.admin import helpers
from django.contrib.admin.utils import model_ngettext, unquote
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.formats import localize
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from chat.models import FallbackReason
from chat.selectors import fallback_counts, rollout_preview
from tenants.admin import TenantScopedAdmin, admin_actor, admin_tenant, change_summary
from tenants.models import Agent, ChangeSource, Tenant, agent_choices
from tenants.services import tenant_create, tenant_update

if TYPE_CHECKING:
    from django.contrib.admin.options import _FieldsetSpec

RECENT_DAYS = 7
PREVIEW_PERCENTAGES = (0, 10, 25, 50, 75, 100)
HISTORY_ROWS = 20


class PercentageForm(forms.Form):
    """A streaming percentage, 0-100 (the bulk action and the rollout preview ask for one)."""

    percentage = forms.IntegerField(min_value=0, max_value=100, label="Streaming percentage")


_SETTINGS_FIELDSETS: _FieldsetSpec = [
    (
        "Streaming",
        {
            "fields": [
                "streaming_enabled",
                "streaming_percentage",
                "fallback_delivery",
                "thought_visibility",
                "double_texting",
            ]
        },
    ),
    (
        "Agent (docs/agents.md)",
        {"fields": ["agent", "agent_url", "agent_signing_secret"]},
    ),
    (
        "Limits",
        {
            "fields": [
                "messages_per_minute",
                "tenant_messages_per_minute",
                "sessions_per_ip_per_minute",
                "max_streams_per_session",
                "max_concurrent_streams",
                "max_stream_seconds",
                "max_message_length",
                "cancel_on_disconnect",
                "log_retention_days",
                "retention_days",
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
]


@admin.register(Tenant)
class TenantAdmin(TenantScopedAdmin[Tenant]):
    """Tenants with their rollout flags editable in the list; every write goes through the tenant services, which
    validate it and record it in the tenant's history."""

    tenant_path = ""
    list_display = [
        "name",
        "public_key",
        "is_active",
        "streaming_enabled",
        "streaming_percentage",
        "fallback_delivery",
        "thought_visibility",
        "agent",
        "messages_per_minute",
        "updated_at",
    ]
    list_editable = ["streaming_enabled", "streaming_percentage"]
    list_filter = ["is_active", "streaming_enabled", "fallback_delivery", "thought_visibility", "agent"]
    search_fields = ["name", "slug", "public_key"]
    actions = ["enable_streaming", "disable_streaming", "set_streaming_percentage"]
    readonly_fields = [
        "public_key",
        "agent_signing_secret",
        "recent_fallbacks",
        "change_history",
        "created_at",
        "updated_at",
    ]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    prepopulated_fields = {"slug": ["name"]}

    def formfield_for_dbfield(self, db_field: models.Field[Any, Any], request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "agent":  # Brook's kinds and the in-process agents of BROOK_AGENTS, read when asked
            return forms.ChoiceField(choices=agent_choices(), initial=Agent.DEMO, help_text=db_field.help_text)
        return super().formfield_for_dbfield(db_field, request, **kwargs)

    fieldsets = [
        (None, {"fields": ["name", "slug", "public_key", "is_active", "allowed_origins"]}),
        *_SETTINGS_FIELDSETS,
        ("Fallbacks", {"fields": ["recent_fallbacks"]}),
        ("History", {"fields": ["change_history", "created_at", "updated_at"]}),
    ]
    # The key is generated on create, and a new tenant has no fallbacks or history yet.
    add_fieldsets = [(None, {"fields": ["name", "slug", "is_active", "allowed_origins"]}), *_SETTINGS_FIELDSETS]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return admin_tenant(request) is None and super().has_add_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Tenant | None = None) -> bool:
        return admin_tenant(request) is None and super().has_delete_permission(request, obj)

    def get_readonly_fields(self, request: HttpRequest, obj: Tenant | None = None) -> list[str]:
        readonly = list(super().get_readonly_fields(request, obj))
        if admin_tenant(request) is not None:
            readonly += ["slug", "is_active"]
        return readonly

    def get_fieldsets(self, request: HttpRequest, obj: Tenant | None = None) -> _FieldsetSpec:
        return self.add_fieldsets if obj is None else super().get_fieldsets(request, obj)

    def get_prepopulated_fields(self, request: HttpRequest, obj: Tenant | None = None) -> dict[str, Any]:
        # Only the add form fills in the slug; on a change page it may be read-only.
        return super().get_prepopulated_fields(request, obj) if obj is None else {}

    def save_model(self, request: HttpRequest, obj: Tenant, form: ModelForm[Tenant], change: bool) -> None:
        actor = admin_actor(request)
        if change:
            # The form has already set the new values on obj; the service compares them with the stored row.
            stored = Tenant.objects.get(pk=obj.pk)
            values = {field: getattr(obj, field) for field in form.changed_data}
            tenant_update(tenant=stored, actor=actor, source=ChangeSource.ADMIN, **values)
            return
        given = {field: getattr(obj, field) for field in form.changed_data if field != "name"}
        created = tenant_create(name=obj.name, actor=actor, source=ChangeSource.ADMIN, **given)
        # The admin goes on with obj (its message, its redirect): make it the row the service created.
        for field in Tenant._meta.concrete_fields:
            setattr(obj, field.attname, getattr(created, field.attname))
        obj._state.adding, obj._state.db = False, created._state.db

    def _update_each(self, request: HttpRequest, queryset: QuerySet[Tenant], done: str, **changes: Any) -> None:
        actor, tenants = admin_actor(request), list(queryset)
        for tenant in tenants:
            tenant_update(tenant=tenant, actor=actor, source=ChangeSource.ADMIN, **changes)
        self.message_user(request, f"{done} for {len(tenants)} {model_ngettext(queryset, len(tenants))}.")

    @admin.action(description="Enable streaming", permissions=["change"])
    def enable_streaming(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        self._update_each(request, queryset, "Streaming enabled", streaming_enabled=True)

    @admin.action(description="Disable streaming", permissions=["change"])
    def disable_streaming(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> None:
        self._update_each(request, queryset, "Streaming disabled", streaming_enabled=False)

    @admin.action(description="Set streaming percentage…", permissions=["change"])
    def set_streaming_percentage(self, request: HttpRequest, queryset: QuerySet[Tenant]) -> HttpResponse | None:
        """Asks for the percentage on a confirmation page (like Django's delete), then applies it."""
        form = PercentageForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            percentage = form.cleaned_data["percentage"]
            self._update_each(
                request, queryset, f"Streaming percentage set to {percentage}", streaming_percentage=percentage
            )
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Set streaming percentage",
            "opts": self.opts,
            "queryset": queryset,
            "form": form,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        return TemplateResponse(request, "admin/tenants/tenant/set_streaming_percentage.html", context)

    def get_urls(self) -> list[URLPattern]:
        name = f"{self.opts.app_label}_{self.opts.model_name}_rollout_preview"
        preview = path(
            "<path:object_id>/rollout-preview/", self.admin_site.admin_view(self.rollout_preview_view), name=name
        )
        return [preview, *super().get_urls()]

    def rollout_preview_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Who of the last days' sessions and visitors would stream at the asked percentage and a few others."""
        tenant = self.get_object(request, unquote(object_id))
        if tenant is None:
            # Django's own answer for a missing object, as on the change and history pages.
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)  # type: ignore[attr-defined,no-any-return]
        if not self.has_view_permission(request, tenant):
            raise PermissionDenied
        form = PercentageForm({"percentage": request.GET.get("percentage", tenant.streaming_percentage)})
        asked = form.cleaned_data["percentage"] if form.is_valid() else None
        percentages = sorted({*PREVIEW_PERCENTAGES, *([] if asked is None else [asked])})
        context = {
            **self.admin_site.each_context(request),
            "title": f"Rollout preview: {tenant}",
            "opts": self.opts,
            "original": tenant,
            "form": form,
            "asked": asked,
            "days": RECENT_DAYS,
            "rows": [rollout_preview(tenant=tenant, percentage=p, days=RECENT_DAYS) for p in percentages],
        }
        return TemplateResponse(request, "admin/tenants/tenant/rollout_preview.html", context)

    @admin.display(description=f"Last {RECENT_DAYS} days")
    def recent_fallbacks(self, tenant: Tenant) -> SafeString:
        counts = fallback_counts(tenant_id=tenant.pk, since=timezone.now() - timedelta(days=RECENT_DAYS))
        url = reverse(f"{self.admin_site.name}:chat_fallbackreport_changelist") + f"?tenant__id__exact={tenant.pk}"
        labels = dict(FallbackReason.choices)
        lines = format_html_join(
            "",
            "<div>{}: {}</div>",
            ((labels.get(reason, reason), n) for reason, n in sorted(counts.items(), key=lambda item: -item[1])),
        )
        return format_html('{}<p><a href="{}">All fallback reports</a></p>', lines or "No fallbacks.", url)

    @admin.display(description="Changes, newest first")
    def change_history(self, tenant: Tenant) -> SafeString:
        changes = tenant.changes.select_related("actor")[:HISTORY_ROWS]
        rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (localize(timezone.localtime(c.created_at)), c.actor or "—", c.get_source_display(), change_summary(c))
                for c in changes
            ),
        )
        url = reverse(f"{self.admin_site.name}:tenants_tenantchange_changelist") + f"?tenant__id__exact={tenant.pk}"
        return format_html(
            "<table><thead><tr><th>When</th><th>Who</th><th>Source</th><th>Change</th></tr></thead>"
            '<tbody>{}</tbody></table><p><a href="{}">All changes</a></p>',
            rows,
            url,
        )

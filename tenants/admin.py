"""The tenant admin's foundations (docs/tenants.md, "Admin"): the one base class that confines staff who work for a
tenant to that tenant's objects, the tenant list filter, change history and memberships. The tenant page itself,
whose panels read chat data (fallbacks, the rollout preview), is ``streaming.ops.admin``."""

from __future__ import annotations

import json
from typing import Any, ClassVar, TypeVar

from django.contrib import admin, messages
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db.models import ForeignKey, Model, QuerySet
from django.db.models.fields.related import RelatedField
from django.forms import ModelChoiceField, ModelForm
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.html import format_html_join
from django.utils.safestring import SafeString

from tenants.models import ChangeSource, ServerKey, Tenant, TenantChange, TenantMembership
from tenants.services import server_key_create, server_key_revoke

_M = TypeVar("_M", bound=Model)


def admin_tenant(request: HttpRequest) -> Tenant | None:
    """The one tenant a staff user works for (their TenantMembership); None for superusers and other staff."""
    user = request.user
    if not isinstance(user, User) or user.is_superuser:
        return None
    # The reverse one-to-one (absent: an AttributeError) and the tenant are cached on the request's user, so a page
    # asks the database at most twice however often it asks this.
    membership: TenantMembership | None = getattr(user, "tenant_membership", None)
    return None if membership is None else membership.tenant


def admin_actor(request: HttpRequest) -> User:
    user = request.user
    if not isinstance(user, User):  # the admin only lets logged-in staff this far
        raise PermissionDenied
    return user


class TenantScopedAdmin(admin.ModelAdmin[_M]):
    """An admin in which staff who work for a tenant see, open and edit only that tenant's objects; other tenants'
    objects answer like absent ones. Superusers and staff without a membership keep Django's permission-based access.
    """

    # The lookup from the model to its tenant: "" for Tenant itself, "tenant", "session__tenant", ...
    tenant_path: ClassVar[str]

    def get_queryset(self, request: HttpRequest) -> QuerySet[_M]:
        queryset = super().get_queryset(request)
        tenant = admin_tenant(request)
        if tenant is None:
            return queryset
        return queryset.filter(**{self.tenant_path or "pk": tenant.pk})


class RecordAdmin(TenantScopedAdmin[_M]):
    """Tenant records that only Brook writes (sessions, messages, steps, events): never added by hand."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


class ViewOnlyAdmin(RecordAdmin[_M]):
    """Tenant records kept as they were written (history, reports): nobody changes or deletes them here."""

    def has_change_permission(self, request: HttpRequest, obj: _M | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: _M | None = None) -> bool:
        return False


class TenantFilter(admin.RelatedFieldListFilter):
    """A list filter on a tenant foreign key that offers staff who work for a tenant only their own tenant."""

    def field_choices(
        self, field: RelatedField[Any, Any], request: HttpRequest, model_admin: admin.ModelAdmin[Any]
    ) -> list[tuple[str, Any]]:
        tenant = admin_tenant(request)
        if tenant is None:
            return super().field_choices(field, request, model_admin)
        return [(str(tenant.pk), str(tenant))]


def change_summary(change: TenantChange) -> SafeString:
    """``field: old → new``, one line per field, values as JSON."""
    return format_html_join(
        "",
        "<div>{}: {} → {}</div>",
        (
            (field, json.dumps(old, ensure_ascii=False), json.dumps(new, ensure_ascii=False))
            for field, (old, new) in change.changes.items()
        ),
    )


@admin.register(TenantChange)
class TenantChangeAdmin(ViewOnlyAdmin[TenantChange]):
    """Every recorded change to a tenant's settings: who, from where, old and new values."""

    tenant_path = "tenant"
    list_display = ["created_at", "tenant", "actor", "source", "summary"]
    list_filter = [("tenant", TenantFilter), "source"]
    list_select_related = ["tenant", "actor"]
    date_hierarchy = "created_at"

    @admin.display(description="Change")
    def summary(self, change: TenantChange) -> SafeString:
        return change_summary(change)


@admin.register(TenantMembership)
class TenantMembershipAdmin(admin.ModelAdmin[TenantMembership]):
    """Which staff user works for which tenant; only superusers see or change it."""

    list_display = ["user", "tenant", "created_at"]
    list_filter = ["tenant"]
    search_fields = ["user__username", "user__email", "tenant__name"]
    autocomplete_fields = ["user", "tenant"]
    list_select_related = ["user", "tenant"]

    def has_view_permission(self, request: HttpRequest, obj: TenantMembership | None = None) -> bool:
        return request.user.is_superuser

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.is_superuser

    def has_change_permission(self, request: HttpRequest, obj: TenantMembership | None = None) -> bool:
        return request.user.is_superuser

    def has_delete_permission(self, request: HttpRequest, obj: TenantMembership | None = None) -> bool:
        return request.user.is_superuser


@admin.register(ServerKey)
class ServerKeyAdmin(TenantScopedAdmin[ServerKey]):
    """A tenant's server keys (docs/agents.md, "Server keys"): made here, the key shown once on the page after saving;
    revoked with an action; never edited or deleted, so the record of who had access stays."""

    tenant_path = "tenant"
    list_display = ["prefix", "name", "tenant", "created_at", "last_used_at", "revoked_at"]
    list_filter = [("tenant", TenantFilter), ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["prefix", "name"]
    list_select_related = ["tenant"]
    actions = ["revoke"]
    _shown = ["prefix", "name", "tenant", "created_by", "created_at", "last_used_at", "revoked_at"]

    def get_fields(self, request: HttpRequest, obj: ServerKey | None = None) -> tuple[str, ...]:
        return tuple(self._shown) if obj is not None else ("tenant", "name")

    def get_readonly_fields(self, request: HttpRequest, obj: ServerKey | None = None) -> list[str]:
        return self._shown if obj is not None else []

    def has_delete_permission(self, request: HttpRequest, obj: ServerKey | None = None) -> bool:
        return False

    def formfield_for_foreignkey(
        self, db_field: ForeignKey[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> ModelChoiceField[Any] | None:
        tenant = admin_tenant(request)
        if db_field.name == "tenant" and tenant is not None:
            kwargs["queryset"] = Tenant.objects.filter(pk=tenant.pk)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: ServerKey, form: ModelForm[ServerKey], change: bool) -> None:
        if change:
            return  # nothing about a key can be edited
        key, shown_once = server_key_create(
            tenant=form.cleaned_data["tenant"],
            name=form.cleaned_data["name"],
            actor=admin_actor(request),
            source=ChangeSource.ADMIN,
        )
        for field in ServerKey._meta.concrete_fields:
            setattr(obj, field.attname, getattr(key, field.attname))
        obj._state.adding = False
        request.brook_server_key = shown_once  # type: ignore[attr-defined] # for response_add, this request only

    def response_add(self, request: HttpRequest, obj: ServerKey, post_url_continue: str | None = None) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": obj,
            "key": getattr(request, "brook_server_key", ""),
            "title": f"Server key {obj.prefix}",
        }
        response = TemplateResponse(request, "admin/tenants/serverkey/created.html", context)
        response["Cache-Control"] = "no-store"  # the key must not stay in any cache
        return response

    @admin.action(description="Revoke the selected keys (at once)")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ServerKey]) -> None:
        actor = admin_actor(request)
        revoked = [key.prefix for key in queryset if server_key_revoke(key=key, actor=actor, source=ChangeSource.ADMIN)]
        self.message_user(request, f"Revoked {len(revoked)} key(s): {', '.join(revoked) or 'none'}.", messages.SUCCESS)

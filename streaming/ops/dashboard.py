"""The admin dashboard at ``/admin/dashboard/`` (docs/metrics.md, "The admin dashboard"): replies, errors, fallbacks,
time to first token and each tenant's rollout, for the last hour, day or week. Staff who work for a tenant see only
that tenant; superusers, and staff who may view tenants, see every tenant together or one at a time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.safestring import SafeString

from chat.models import FallbackReason
from streaming.ops.charts import Series, chart
from streaming.ops.stats import Bucket, reply_stats, tenant_choices, tenant_rows
from tenants.admin import admin_tenant
from tenants.models import Tenant

TEMPLATE = "admin/brook/dashboard.html"
# Hours shown → bucket width, and how the chart labels a bucket.
WINDOWS: dict[int, tuple[timedelta, str]] = {
    1: (timedelta(minutes=5), "%H:%M"),
    24: (timedelta(hours=1), "%H:%M"),
    168: (timedelta(hours=6), "%a %H:%M"),
}
WINDOW_NAMES = {1: "Last hour", 24: "Last 24 hours", 168: "Last 7 days"}
DEFAULT_HOURS = 24
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Colours that read on the admin's light and dark themes.
P50, P95, P99 = "#2f7ed8", "#e8a23a", "#c0392b"
ERRORS, FALLBACKS, VOLUME = "#c0392b", "#8e44ad", "#417690"


class DashboardForm(forms.Form):
    """The page's query: a window in hours and, optionally, one tenant's slug."""

    hours = forms.TypedChoiceField(
        choices=[(h, WINDOW_NAMES[h]) for h in WINDOWS], coerce=int, required=False, empty_value=None
    )
    tenant = forms.SlugField(required=False)


def window(*, hours: int, now: datetime) -> tuple[datetime, datetime]:
    """The ``hours`` before the end of the bucket that ``now`` falls in; buckets start at whole multiples of their
    width since the epoch (whole hours, whole five minutes), so the x axis reads evenly."""
    width = WINDOWS[hours][0]
    until = now - (now - EPOCH) % width + width
    return until - timedelta(hours=hours), until


def dashboard(request: HttpRequest) -> HttpResponse:
    """The dashboard page; 400 for a bad query, 404 for a tenant the user may not see, 403 for staff who may see
    no tenant's numbers."""
    own = admin_tenant(request)
    if own is None and not request.user.has_perm("tenants.view_tenant"):  # superusers have every permission
        raise PermissionDenied
    form = DashboardForm(request.GET)
    context = {
        **admin.site.each_context(request),
        "title": "Dashboard",
        "windows": [(h, WINDOW_NAMES[h]) for h in WINDOWS],
        "own_tenant": own,
        "tenant_choices": [] if own is not None else tenant_choices(),
    }
    if not form.is_valid():
        errors = "; ".join(f"{name}: {' '.join(str(m) for m in messages)}" for name, messages in form.errors.items())
        context |= {"error": f"This dashboard cannot show that: {errors}", "hours": DEFAULT_HOURS, "tenant": None}
        return TemplateResponse(request, TEMPLATE, context, status=400)

    hours: int = form.cleaned_data["hours"] or DEFAULT_HOURS
    slug: str = form.cleaned_data["tenant"]
    tenant = _chosen(slug=slug, own=own) if slug else own
    tenant_ids = None if tenant is None else [tenant.pk]

    since, until = window(hours=hours, now=timezone.now())
    stats = reply_stats(tenant_ids=tenant_ids, since=since, until=until, bucket=WINDOWS[hours][0])
    rows = tenant_rows(tenant_ids=tenant_ids, window=stats.by_tenant)
    streams = [row.open_streams for row in rows]
    labels = dict(FallbackReason.choices)
    context |= {
        "hours": hours,
        "tenant": tenant,
        "since": since,
        "until": until,
        "stats": stats,
        "total": stats.total,
        "rows": rows,
        "running": sum(row.running for row in rows),
        "open_streams": None if None in streams else sum(s for s in streams if s is not None),
        "fallbacks": [(reason, labels.get(reason, reason), n) for reason, n in stats.fallbacks_by_reason],
        "charts": charts(stats.buckets, hours=hours),
    }
    return TemplateResponse(request, TEMPLATE, context)


dashboard_view = admin.site.admin_view(dashboard)


def _chosen(*, slug: str, own: Tenant | None) -> Tenant:
    """The tenant ``slug`` names, if the user may see it: their own, or any for those who see every tenant. Another
    tenant's slug answers 404 exactly like a missing one."""
    tenant = (own if own.slug == slug else None) if own is not None else Tenant.objects.filter(slug=slug).first()
    if tenant is None:
        raise Http404("No such tenant.")
    return tenant


def charts(buckets: list[Bucket], *, hours: int) -> dict[str, SafeString]:
    """The page's three charts: TTFT percentiles, error and fallback rates, replies started; one point per bucket."""
    label_format = WINDOWS[hours][1]
    starts = [timezone.localtime(b.start) for b in buckets]
    labels = [start.strftime(label_format) for start in starts]
    titles = [
        f"{start:%Y-%m-%d %H:%M} to {timezone.localtime(b.end):%H:%M}" for start, b in zip(starts, buckets, strict=True)
    ]
    tallies = [b.tally for b in buckets]
    return {
        "ttft": chart(
            key="ttft",
            label="Time to first token per bucket, 50th, 95th and 99th percentile, in milliseconds",
            x_labels=labels,
            x_titles=titles,
            unit=" ms",
            whole=True,
            series=[
                Series("p50", [t.ttft_p50 for t in tallies], P50),
                Series("p95", [t.ttft_p95 for t in tallies], P95),
                Series("p99", [t.ttft_p99 for t in tallies], P99, dashed=True),  # often equal to p95
            ],
        ),
        "rates": chart(
            key="rates",
            label="Error rate (of ended replies) and fallback rate (of started replies) per bucket, in percent",
            x_labels=labels,
            x_titles=titles,
            unit=" %",
            series=[
                Series("Error rate", [t.error_percent for t in tallies], ERRORS),
                Series("Fallback rate", [t.fallback_percent for t in tallies], FALLBACKS),
            ],
        ),
        "volume": chart(
            key="volume",
            label="Replies started per bucket",
            x_labels=labels,
            x_titles=titles,
            kind="bar",
            whole=True,
            series=[Series("Replies started", [t.started for t in tallies], VOLUME)],
        ),
    }

"""Reads for the admin dashboard (docs/metrics.md, "The admin dashboard"): assistant replies, how they ended, their
time to first token, and fallback reports, per time bucket and per tenant.

The numbers come from the database, so they count every worker's replies and survive restarts. Each read fetches only
the few columns it needs for the window and adds them up here: nearest-rank percentiles need every value anyway, and
Python gives the same answer on SQLite and PostgreSQL.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import cast

import redis
from django.db.models import Count

from chat.models import FallbackReport, Message, MessageStatus, Role
from core.limits import open_streams, tenant_pool
from tenants.models import Tenant

logger = logging.getLogger(__name__)

ERROR_STATUSES = (MessageStatus.FAILED, MessageStatus.INTERRUPTED)
NO_CODE = "(no code)"
CHUNK = 2000


def nearest_rank(ordered: Sequence[int], percent: int) -> int | None:
    """The nearest-rank percentile of ``ordered`` (sorted, ascending): the smallest value with at least ``percent``
    % of the values at or below it; None when there are no values."""
    if not ordered:
        return None
    rank = max(1, (percent * len(ordered) + 99) // 100)  # ceil(percent / 100 * n), in integers
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class Tally:
    """Replies started in a span of time, by the status they ended with, their time-to-first-token percentiles (ms),
    and the fallback reports made in the same span."""

    started: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    interrupted: int = 0
    fallbacks: int = 0
    ttft_p50: int | None = None
    ttft_p95: int | None = None
    ttft_p99: int | None = None

    @property
    def ended(self) -> int:
        return self.completed + self.failed + self.cancelled + self.interrupted

    @property
    def errors(self) -> int:
        return self.failed + self.interrupted

    @property
    def error_percent(self) -> float | None:
        """Failed and interrupted replies per 100 ended ones; None when none ended."""
        return 100 * self.errors / self.ended if self.ended else None

    @property
    def fallback_percent(self) -> float | None:
        """Fallback reports per 100 replies started; None when none started."""
        return 100 * self.fallbacks / self.started if self.started else None


@dataclass(slots=True)
class _Counts:
    """A Tally being added up."""

    started: int = 0
    fallbacks: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    ttfts: list[int] = field(default_factory=list)

    def reply(self, status: str, ttft: int | None) -> None:
        self.started += 1
        self.statuses[status] += 1
        if ttft is not None:
            self.ttfts.append(ttft)

    def tally(self) -> Tally:
        ordered = sorted(self.ttfts)
        return Tally(
            started=self.started,
            completed=self.statuses[MessageStatus.COMPLETED],
            failed=self.statuses[MessageStatus.FAILED],
            cancelled=self.statuses[MessageStatus.CANCELLED],
            interrupted=self.statuses[MessageStatus.INTERRUPTED],
            fallbacks=self.fallbacks,
            ttft_p50=nearest_rank(ordered, 50),
            ttft_p95=nearest_rank(ordered, 95),
            ttft_p99=nearest_rank(ordered, 99),
        )


@dataclass(frozen=True, slots=True)
class Bucket:
    """One slice of the window, ``start`` included and ``end`` not."""

    start: datetime
    end: datetime
    tally: Tally


@dataclass(frozen=True, slots=True)
class ReplyStats:
    """A window's numbers: per bucket, in all, per tenant, and its errors and fallbacks broken down."""

    buckets: list[Bucket]
    total: Tally
    by_tenant: dict[int, Tally]
    errors_by_code: list[tuple[str, int]]  # most frequent first, then by name
    fallbacks_by_reason: list[tuple[str, int]]  # most frequent first, then by name


def reply_stats(*, tenant_ids: Sequence[int] | None, since: datetime, until: datetime, bucket: timedelta) -> ReplyStats:
    """Assistant replies that started in ``[since, until)`` (by ``started_at``) and fallback reports made then (by
    ``created_at``), of ``tenant_ids`` (None: every tenant), in buckets of ``bucket`` from ``since`` (two queries).

    A reply counts in the bucket it started in, with the status it has now: one still running is started but not
    ended. Errors are failed and interrupted replies, as a share of ended ones.
    """
    if bucket <= timedelta(0) or until <= since:
        raise ValueError("The window must be non-empty and the bucket positive.")
    slots = -((since - until) // bucket)  # ceil((until - since) / bucket)
    counts = [_Counts() for _ in range(slots)]
    total = _Counts()
    per_tenant: dict[int, _Counts] = {}
    errors: Counter[str] = Counter()
    reasons: Counter[str] = Counter()

    replies = Message.objects.filter(role=Role.ASSISTANT, started_at__gte=since, started_at__lt=until)
    if tenant_ids is not None:
        replies = replies.filter(session__tenant_id__in=tenant_ids)
    # started_at is never null here: the filter bounds it.
    rows = cast(
        "Iterator[tuple[int, datetime, str, str, int | None]]",
        replies.order_by()
        .values_list("session__tenant_id", "started_at", "status", "error_code", "time_to_first_token_ms")
        .iterator(chunk_size=CHUNK),
    )
    for tenant_id, started_at, status, error_code, ttft in rows:
        for tally in (counts[(started_at - since) // bucket], total, per_tenant.setdefault(tenant_id, _Counts())):
            tally.reply(status, ttft)
        if status in ERROR_STATUSES:
            errors[error_code or NO_CODE] += 1

    reports = FallbackReport.objects.filter(created_at__gte=since, created_at__lt=until)
    if tenant_ids is not None:
        reports = reports.filter(tenant_id__in=tenant_ids)
    for tenant_id, created_at, reason in (
        reports.order_by().values_list("tenant_id", "created_at", "reason").iterator(chunk_size=CHUNK)
    ):
        for tally in (counts[(created_at - since) // bucket], total, per_tenant.setdefault(tenant_id, _Counts())):
            tally.fallbacks += 1
        reasons[reason] += 1

    return ReplyStats(
        buckets=[
            Bucket(start=since + i * bucket, end=min(until, since + (i + 1) * bucket), tally=c.tally())
            for i, c in enumerate(counts)
        ],
        total=total.tally(),
        by_tenant={tenant_id: c.tally() for tenant_id, c in per_tenant.items()},
        errors_by_code=_most_first(errors),
        fallbacks_by_reason=_most_first(reasons),
    )


def _most_first(counts: Counter[str]) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


@dataclass(frozen=True, slots=True)
class TenantRow:
    """A tenant's rollout settings, what it is doing now, and its numbers for the window."""

    id: int
    name: str
    slug: str
    streaming_enabled: bool
    streaming_percentage: int
    running: int  # replies an agent is running now
    open_streams: int | None  # SSE and WebSocket streams open now, across workers; None when that is unknown
    tally: Tally


def tenant_rows(*, tenant_ids: Sequence[int] | None, window: Mapping[int, Tally]) -> list[TenantRow]:
    """``tenant_ids`` (None: every tenant) by name, each with its running replies and open streams now and its
    ``window`` tally (two queries, and one stream count per tenant from the limits' store)."""
    tenants = Tenant.objects.order_by("name", "id")
    running = Message.objects.filter(role=Role.ASSISTANT, status=MessageStatus.RUNNING)
    if tenant_ids is not None:
        tenants = tenants.filter(id__in=tenant_ids)
        running = running.filter(session__tenant_id__in=tenant_ids)
    running_by_tenant: dict[int, int] = dict(
        running.order_by().values("session__tenant_id").annotate(n=Count("id")).values_list("session__tenant_id", "n")
    )
    columns = tenants.values_list("id", "name", "slug", "streaming_enabled", "streaming_percentage")
    streams_known = True
    rows = []
    for tenant_id, name, slug, enabled, percentage in columns:
        streams = None
        if streams_known:
            try:
                streams = open_streams(tenant_pool(tenant_id))
            except redis.RedisError:
                # Redis may be down; the page still shows the database's numbers. One failure is enough to know.
                logger.warning("Open streams not counted: the limits' store is unavailable", exc_info=True)
                streams_known = False
        rows.append(
            TenantRow(
                id=tenant_id,
                name=name,
                slug=slug,
                streaming_enabled=enabled,
                streaming_percentage=percentage,
                running=running_by_tenant.get(tenant_id, 0),
                open_streams=streams,
                tally=window.get(tenant_id, Tally()),
            )
        )
    return rows


def tenant_choices() -> list[tuple[str, str]]:
    """Every tenant's slug and name, by name: what someone who may see all tenants can pick from."""
    return list(Tenant.objects.order_by("name", "id").values_list("slug", "name"))

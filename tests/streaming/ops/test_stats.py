"""The dashboard's reads (streaming/ops/stats.py): replies per bucket by how they ended, TTFT percentiles, error and
fallback rates, errors and fallbacks broken down, per-tenant rows, all confined to the asked tenants and window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pytest_django import Settings

from chat.models import ChatSession, FallbackReason, FallbackReport, Message, MessageStatus, Role
from core.errors import ErrorCode
from core.limits import stream_slot_take
from streaming.ops.stats import NO_CODE, Tally, nearest_rank, reply_stats, tenant_rows
from tenants.models import Tenant
from tests.conftest import free_port

pytestmark = pytest.mark.django_db

T0 = datetime(2025, 3, 3, 12, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


def reply(
    tenant: Tenant,
    at: datetime,
    status: MessageStatus = MessageStatus.COMPLETED,
    *,
    ttft: int | None = None,
    error_code: str = "",
) -> Message:
    """An assistant reply of ``tenant`` that started at ``at``."""
    session, _ = ChatSession.objects.get_or_create(tenant=tenant, visitor_id="visitor")
    return Message.objects.create(
        session=session,
        role=Role.ASSISTANT,
        status=status,
        started_at=at,
        time_to_first_token_ms=ttft,
        error_code=error_code,
    )


def fallback(tenant: Tenant, at: datetime, reason: FallbackReason = FallbackReason.TIMEOUT) -> None:
    session, _ = ChatSession.objects.get_or_create(tenant=tenant, visitor_id="visitor")
    report = FallbackReport.objects.create(
        tenant=tenant, session=session, reason=reason, code="STREAM_004", from_delivery="stream", to_delivery="poll"
    )
    FallbackReport.objects.filter(pk=report.pk).update(created_at=at)  # created_at is set on create


@pytest.mark.parametrize(
    ("values", "percent", "expected"),
    [
        (list(range(1, 101)), 50, 50),
        (list(range(1, 101)), 95, 95),
        (list(range(1, 101)), 99, 99),
        ([10, 20, 30, 40], 50, 20),
        ([10, 20, 30, 40], 95, 40),
        ([10, 20, 30, 40, 50, 60, 70, 80, 90, 100], 99, 100),
        ([10, 20, 30, 40, 50, 60, 70, 80, 90, 100], 95, 100),
        ([10, 20, 30, 40, 50, 60, 70, 80, 90, 100], 50, 50),
        ([7], 50, 7),
        ([7], 99, 7),
        ([], 50, None),
    ],
)
def test_nearest_rank_is_the_smallest_value_with_the_share_at_or_below_it(
    values: list[int], percent: int, expected: int | None
) -> None:
    assert nearest_rank(values, percent) == expected


def test_replies_count_in_the_bucket_they_started_in_with_the_status_they_have_now(tenant: Tenant) -> None:
    for status in (MessageStatus.COMPLETED, MessageStatus.FAILED, MessageStatus.CANCELLED, MessageStatus.INTERRUPTED):
        reply(tenant, T0 + timedelta(minutes=10), status)
    reply(tenant, T0 + 2 * HOUR, MessageStatus.RUNNING)
    reply(tenant, T0 + 3 * HOUR - timedelta(seconds=1))
    reply(tenant, T0 - timedelta(seconds=1))  # before the window
    reply(tenant, T0 + 3 * HOUR)  # the window's end is not in it
    session = ChatSession.objects.get(tenant=tenant)
    Message.objects.create(session=session, role=Role.USER, started_at=T0 + timedelta(minutes=5))  # not a reply
    Message.objects.create(session=session, role=Role.ASSISTANT, status=MessageStatus.QUEUED)  # never started

    stats = reply_stats(tenant_ids=None, since=T0, until=T0 + 3 * HOUR, bucket=HOUR)

    assert [(b.start, b.end) for b in stats.buckets] == [
        (T0, T0 + HOUR),
        (T0 + HOUR, T0 + 2 * HOUR),
        (T0 + 2 * HOUR, T0 + 3 * HOUR),
    ]
    first, empty, last = (b.tally for b in stats.buckets)
    assert first == Tally(started=4, completed=1, failed=1, cancelled=1, interrupted=1)
    assert (first.ended, first.errors, first.error_percent) == (4, 2, 50.0)
    assert empty == Tally()
    assert (last.started, last.completed, last.ended) == (2, 1, 1)  # the running one has not ended
    assert stats.total == Tally(started=6, completed=2, failed=1, cancelled=1, interrupted=1)


def test_ttft_percentiles_are_per_bucket_and_for_the_window_from_replies_that_have_one(tenant: Tenant) -> None:
    for ttft in range(100, 2100, 100):  # 20 values: 100 ... 2000 ms
        reply(tenant, T0 + timedelta(minutes=1), ttft=ttft)
    reply(tenant, T0 + timedelta(minutes=2), MessageStatus.FAILED)  # failed before its first token: no TTFT
    reply(tenant, T0 + HOUR, ttft=5000)

    stats = reply_stats(tenant_ids=None, since=T0, until=T0 + 2 * HOUR, bucket=HOUR)

    first, second = (b.tally for b in stats.buckets)
    assert (first.started, first.ttft_p50, first.ttft_p95, first.ttft_p99) == (21, 1000, 1900, 2000)
    assert (second.ttft_p50, second.ttft_p95, second.ttft_p99) == (5000, 5000, 5000)
    assert (stats.total.ttft_p50, stats.total.ttft_p95, stats.total.ttft_p99) == (1100, 2000, 5000)


def test_fallback_rate_is_reports_per_reply_started_in_the_same_bucket(tenant: Tenant) -> None:
    for _ in range(4):
        reply(tenant, T0 + timedelta(minutes=30))
    fallback(tenant, T0 + timedelta(minutes=31))
    fallback(tenant, T0 + timedelta(minutes=59), FallbackReason.UNSUPPORTED)
    fallback(tenant, T0 + HOUR + timedelta(minutes=1))  # a bucket with reports but no replies
    fallback(tenant, T0 - timedelta(minutes=1))  # before the window

    stats = reply_stats(tenant_ids=None, since=T0, until=T0 + 3 * HOUR, bucket=HOUR)

    first, second, third = (b.tally for b in stats.buckets)
    assert (first.fallbacks, first.fallback_percent) == (2, 50.0)
    assert (second.fallbacks, second.fallback_percent) == (1, None)
    assert (third.fallbacks, third.fallback_percent, third.error_percent) == (0, None, None)
    assert (stats.total.fallbacks, stats.total.fallback_percent) == (3, 75.0)
    assert stats.fallbacks_by_reason == [(FallbackReason.TIMEOUT, 2), (FallbackReason.UNSUPPORTED, 1)]


def test_errors_are_failed_and_interrupted_replies_counted_by_code(tenant: Tenant) -> None:
    at = T0 + timedelta(minutes=5)
    reply(tenant, at, MessageStatus.FAILED, error_code=ErrorCode.AGENT_ERROR)
    reply(tenant, at, MessageStatus.FAILED, error_code=ErrorCode.AGENT_ERROR)
    reply(tenant, at, MessageStatus.FAILED, error_code=ErrorCode.STREAM_TIMEOUT)
    reply(tenant, at, MessageStatus.INTERRUPTED, error_code=ErrorCode.RUN_INTERRUPTED)
    reply(tenant, at, MessageStatus.FAILED)
    reply(tenant, at, MessageStatus.CANCELLED)  # the visitor's choice, not an error
    reply(tenant, at)

    stats = reply_stats(tenant_ids=None, since=T0, until=T0 + HOUR, bucket=HOUR)

    assert stats.errors_by_code == [  # most first, then by code
        (ErrorCode.AGENT_ERROR, 2),
        (NO_CODE, 1),
        (ErrorCode.RUN_INTERRUPTED, 1),
        (ErrorCode.STREAM_TIMEOUT, 1),
    ]
    assert (stats.total.errors, stats.total.ended) == (5, 7)
    assert stats.total.error_percent == pytest.approx(500 / 7)


def test_only_the_asked_tenants_are_counted(tenant: Tenant, other_tenant: Tenant) -> None:
    at = T0 + timedelta(minutes=5)
    reply(tenant, at, ttft=100)
    reply(other_tenant, at, MessageStatus.FAILED, error_code=ErrorCode.AGENT_ERROR, ttft=900)
    reply(other_tenant, at, ttft=800)
    fallback(other_tenant, at)

    ours = reply_stats(tenant_ids=[tenant.pk], since=T0, until=T0 + HOUR, bucket=HOUR)
    everyone = reply_stats(tenant_ids=None, since=T0, until=T0 + HOUR, bucket=HOUR)

    assert ours.total == Tally(started=1, completed=1, ttft_p50=100, ttft_p95=100, ttft_p99=100)
    assert (ours.errors_by_code, ours.fallbacks_by_reason) == ([], [])
    assert set(ours.by_tenant) == {tenant.pk}
    assert (everyone.total.started, everyone.total.fallbacks, everyone.total.ttft_p99) == (3, 1, 900)
    assert everyone.by_tenant[other_tenant.pk] == Tally(
        started=2, completed=1, failed=1, fallbacks=1, ttft_p50=800, ttft_p95=900, ttft_p99=900
    )


def test_an_empty_window_has_every_bucket_and_nothing_in_them(tenant: Tenant) -> None:
    stats = reply_stats(tenant_ids=[tenant.pk], since=T0, until=T0 + HOUR, bucket=timedelta(minutes=5))

    assert len(stats.buckets) == 12
    assert all(b.tally == Tally() for b in stats.buckets)
    assert stats.total == Tally() and stats.total.error_percent is None and stats.total.ttft_p50 is None
    assert (stats.by_tenant, stats.errors_by_code, stats.fallbacks_by_reason) == ({}, [], [])


def test_a_window_that_is_not_a_whole_number_of_buckets_ends_with_a_short_one(tenant: Tenant) -> None:
    reply(tenant, T0 + 2 * HOUR + timedelta(minutes=20))

    stats = reply_stats(tenant_ids=None, since=T0, until=T0 + 2.5 * HOUR, bucket=HOUR)

    assert [b.end for b in stats.buckets] == [T0 + HOUR, T0 + 2 * HOUR, T0 + 2.5 * HOUR]
    assert stats.buckets[-1].tally.started == 1


def test_an_empty_window_or_bucket_is_refused() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        reply_stats(tenant_ids=None, since=T0, until=T0, bucket=HOUR)
    with pytest.raises(ValueError, match="positive"):
        reply_stats(tenant_ids=None, since=T0, until=T0 + HOUR, bucket=timedelta(0))


def test_tenant_rows_show_the_rollout_what_runs_now_and_the_window(tenant: Tenant, other_tenant: Tenant) -> None:
    Tenant.objects.filter(pk=tenant.pk).update(streaming_percentage=35)
    reply(tenant, T0, MessageStatus.RUNNING)  # running now, whenever it started
    reply(tenant, T0)
    session = ChatSession.objects.get(tenant=tenant)
    slots = [stream_slot_take(tenant_id=tenant.pk, session_id=session.pk, per_session=5, per_tenant=5) for _ in "ab"]
    window = {tenant.pk: Tally(started=7, completed=7)}

    rows = tenant_rows(tenant_ids=None, window=window)
    ours = tenant_rows(tenant_ids=[tenant.pk], window=window)

    assert [(r.name, r.slug, r.streaming_enabled, r.streaming_percentage) for r in rows] == [
        ("Acme Shop", "acme-shop", True, 35),
        ("Globex", "globex", False, 0),
    ]
    assert [(r.running, r.open_streams, r.tally) for r in rows] == [(1, 2, window[tenant.pk]), (0, 0, Tally())]
    assert ours == rows[:1]
    for slot in slots:
        slot.release()
    assert tenant_rows(tenant_ids=[tenant.pk], window={})[0].open_streams == 0


def test_without_the_limits_store_open_streams_are_unknown_and_the_rest_still_shows(
    settings: Settings, tenant: Tenant, other_tenant: Tenant
) -> None:
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"  # nobody listens there

    rows = tenant_rows(tenant_ids=None, window={})

    assert [(r.slug, r.open_streams, r.running) for r in rows] == [("acme-shop", None, 0), ("globex", None, 0)]

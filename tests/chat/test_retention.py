"""Retention: `sessions_purge` and `manage.py brook_purge`."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from chat.events import EventType
from chat.models import ChatSession, Event, FallbackReport, Message, MessageStatus, Role, ThoughtStep
from chat.retention import PurgeReport, TenantPurge, sessions_purge
from tenants.models import Tenant
from tenants.services import tenant_update
from tests.conftest import conversation

pytestmark = pytest.mark.django_db


def _conversation(tenant: Tenant, *, idle_days: int, reply_status: str = MessageStatus.COMPLETED) -> ChatSession:
    """A session idle for ``idle_days``: a question, and a reply with a step, a logged event and a fallback report."""
    last_activity = timezone.now() - timedelta(days=idle_days)
    reply = conversation(tenant)
    running = reply_status in {MessageStatus.QUEUED, MessageStatus.RUNNING}
    Message.objects.filter(id=reply.id).update(status=reply_status, finished_at=None if running else last_activity)
    Event.objects.create(message=reply, seq=1, type=EventType.MESSAGE_STARTED, data={})
    ChatSession.objects.filter(id=reply.session_id).update(last_activity_at=last_activity)
    return reply.session


def _purge(**options: Any) -> PurgeReport:
    return sessions_purge(now=timezone.now(), **options)


def _brook_purge(*args: str) -> Any:
    out = io.StringIO()
    call_command("brook_purge", *args, stdout=out)
    return json.loads(out.getvalue())


# --- sessions_purge ---------------------------------------------------------------------------------------------------


def test_a_session_idle_past_retention_is_purged_with_everything_it_holds(tenant: Tenant) -> None:
    old = _conversation(tenant, idle_days=91)

    report = _purge()

    assert report.tenants == {tenant.slug: TenantPurge(sessions=1, messages=2)}
    assert not ChatSession.objects.filter(id=old.id).exists()
    assert not Message.objects.filter(session_id=old.id).exists()
    assert not ThoughtStep.objects.exists()
    assert not Event.objects.exists()
    assert not FallbackReport.objects.exists()


def test_a_recent_session_of_the_same_tenant_stays(tenant: Tenant) -> None:
    _conversation(tenant, idle_days=91)
    recent = _conversation(tenant, idle_days=89)

    _purge()

    assert list(ChatSession.objects.values_list("id", flat=True)) == [recent.id]
    assert Message.objects.filter(session=recent).count() == 2
    assert ThoughtStep.objects.filter(message__session=recent).exists()
    assert Event.objects.filter(message__session=recent).exists()
    assert FallbackReport.objects.filter(session=recent).exists()


def test_a_tenant_with_a_longer_retention_keeps_its_old_session(tenant: Tenant, other_tenant: Tenant) -> None:
    tenant_update(tenant=other_tenant, retention_days=365)
    _conversation(tenant, idle_days=200)
    kept = _conversation(other_tenant, idle_days=200)

    report = _purge()

    assert list(ChatSession.objects.values_list("id", flat=True)) == [kept.id]
    assert report.tenants == {tenant.slug: TenantPurge(sessions=1, messages=2)}


def test_retention_zero_keeps_everything(tenant: Tenant) -> None:
    tenant_update(tenant=tenant, retention_days=0)
    kept = _conversation(tenant, idle_days=10_000)

    report = _purge()

    assert report.tenants == {}
    assert ChatSession.objects.filter(id=kept.id).exists()
    assert Message.objects.filter(session=kept).count() == 2


@pytest.mark.parametrize("status", [MessageStatus.QUEUED, MessageStatus.RUNNING])
def test_a_session_whose_reply_is_still_to_come_is_kept(tenant: Tenant, status: str) -> None:
    in_use = _conversation(tenant, idle_days=91, reply_status=status)

    report = _purge()

    assert report.tenants == {}
    assert ChatSession.objects.filter(id=in_use.id).exists()


def test_a_dry_run_reports_the_counts_and_deletes_nothing(tenant: Tenant) -> None:
    _conversation(tenant, idle_days=91)
    _conversation(tenant, idle_days=92)

    report = _purge(dry_run=True, batch=1)

    assert report == PurgeReport(dry_run=True, tenants={tenant.slug: TenantPurge(sessions=2, messages=4)})
    assert ChatSession.objects.count() == 2
    assert Message.objects.count() == 4
    assert Event.objects.count() == 2


def test_a_purge_larger_than_a_batch_takes_as_many_batches_as_it_needs(tenant: Tenant) -> None:
    for days in (91, 92, 93):
        _conversation(tenant, idle_days=days)

    report = _purge(batch=2)

    assert (report.sessions, report.messages) == (3, 6)
    assert not ChatSession.objects.exists()


def test_a_batch_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        _purge(batch=0)


# --- manage.py brook_purge --------------------------------------------------------------------------------------------


def test_the_command_prints_a_json_summary(tenant: Tenant, other_tenant: Tenant) -> None:
    _conversation(tenant, idle_days=91)
    _conversation(other_tenant, idle_days=100)
    _conversation(other_tenant, idle_days=5)

    body = _brook_purge()

    assert body == {
        "dry_run": False,
        "tenants": {
            tenant.slug: {"sessions": 1, "messages": 2},
            other_tenant.slug: {"sessions": 1, "messages": 2},
        },
        "sessions": 2,
        "messages": 4,
        "logs_compacted": None,
    }
    assert ChatSession.objects.count() == 1


def test_the_command_in_a_dry_run_deletes_nothing(tenant: Tenant) -> None:
    _conversation(tenant, idle_days=91)

    body = _brook_purge("--dry-run")

    assert (body["dry_run"], body["sessions"], body["messages"]) == (True, 1, 2)
    assert ChatSession.objects.count() == 1


def test_the_command_with_logs_compacts_an_expired_finished_replys_log_and_keeps_the_message(tenant: Tenant) -> None:
    session = _conversation(tenant, idle_days=8)  # past the 7 days of log retention, well within the 90 of retention

    body = _brook_purge("--logs")

    reply = Message.objects.get(session=session, role=Role.ASSISTANT)
    assert (body["sessions"], body["logs_compacted"]) == (0, 1)
    assert reply.log_compacted_at is not None
    assert reply.content == "An answer"
    assert not Event.objects.filter(message=reply).exists()
    assert ThoughtStep.objects.filter(message=reply).exists()


def test_the_command_with_logs_compacts_every_expired_log_not_just_one_batch(tenant: Tenant) -> None:
    for days in (8, 9, 10):
        _conversation(tenant, idle_days=days)

    body = _brook_purge("--logs", "--batch", "1")

    assert body["logs_compacted"] == 3
    assert not Event.objects.exists()


@pytest.mark.parametrize("args", [("--batch", "0"), ("--batch", "many"), ("--dry-run", "--logs")])
def test_the_command_refuses_bad_arguments_and_changes_nothing(tenant: Tenant, args: tuple[str, ...]) -> None:
    _conversation(tenant, idle_days=91)

    with pytest.raises(CommandError):
        call_command("brook_purge", *args, stdout=io.StringIO())

    assert ChatSession.objects.count() == 1

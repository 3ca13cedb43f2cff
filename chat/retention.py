"""Retention: sessions idle longer than their tenant's ``retention_days`` are purged (docs/tenants.md, "Retention").

Deleting a session takes everything it holds with it: its messages, their thought steps and event logs, and its
fallback reports. Sessions go in batches, each deleted in a transaction of its own, so that a large purge never holds
one long transaction. ``manage.py brook_purge`` runs it. A finished reply's event log goes sooner, after the tenant's
``log_retention_days``, while the message stays: that is ``chat.services.logs_compact``, run by the sweeper.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet

from chat.models import ChatSession, Message, MessageStatus
from tenants.models import Tenant

# A session with a reply still to be answered is in use, however long it has been idle.
IN_USE_STATUSES = (MessageStatus.QUEUED, MessageStatus.RUNNING)


@dataclass(frozen=True)
class TenantPurge:
    """What a purge removed from one tenant (in a dry run: what it would remove)."""

    sessions: int = 0
    messages: int = 0


@dataclass
class PurgeReport:
    """Per tenant slug, the sessions and messages a purge removed; tenants with nothing to purge are left out."""

    dry_run: bool = False
    tenants: dict[str, TenantPurge] = field(default_factory=dict)

    @property
    def sessions(self) -> int:
        return sum(purge.sessions for purge in self.tenants.values())

    @property
    def messages(self) -> int:
        return sum(purge.messages for purge in self.tenants.values())


def _expired(*, tenant_id: int, cutoff: datetime) -> QuerySet[ChatSession]:
    """The tenant's sessions idle since before ``cutoff`` and not in use."""
    in_use = Message.objects.filter(session_id=OuterRef("pk"), status__in=IN_USE_STATUSES)
    return ChatSession.objects.filter(tenant_id=tenant_id, last_activity_at__lt=cutoff).exclude(Exists(in_use))


def _delete(*, tenant_id: int, cutoff: datetime, ids: list[uuid.UUID]) -> TenantPurge:
    with transaction.atomic():
        # Lock the sessions and check them again: one that got a message since its id was read is active again.
        # message_submit locks the session too: a message either lands first (and the session stays) or waits and
        # then finds its session gone.
        locked = list(
            _expired(tenant_id=tenant_id, cutoff=cutoff)
            .filter(id__in=ids)
            .select_for_update()
            .order_by()
            .values_list("id", flat=True)
        )
        _, deleted = ChatSession.objects.filter(id__in=locked).delete()
    return TenantPurge(sessions=deleted.get(ChatSession._meta.label, 0), messages=deleted.get(Message._meta.label, 0))


def sessions_purge(*, now: datetime, batch: int = 500, dry_run: bool = False) -> PurgeReport:
    """Delete each tenant's sessions idle for longer than its ``retention_days`` (0 keeps them), ``batch`` sessions
    per transaction, with everything they hold; a session with a queued or running reply stays. A dry run counts what
    would go and deletes nothing."""
    if batch < 1:
        raise ValueError(f"batch must be at least 1, not {batch}.")
    report = PurgeReport(dry_run=dry_run)
    tenants = Tenant.objects.filter(retention_days__gt=0).order_by("slug")
    for tenant_id, slug, days in tenants.values_list("id", "slug", "retention_days"):
        cutoff = now - timedelta(days=days)
        sessions = messages = 0
        after: uuid.UUID | None = None
        while True:
            # Page by id, so that a dry run (which deletes nothing) and sessions that turn active both move on.
            page = _expired(tenant_id=tenant_id, cutoff=cutoff).order_by("id")
            if after is not None:
                page = page.filter(id__gt=after)
            ids = list(page.values_list("id", flat=True)[:batch])
            if not ids:
                break
            after = ids[-1]
            if dry_run:
                sessions += len(ids)
                messages += Message.objects.filter(session_id__in=ids).count()
            else:
                purged = _delete(tenant_id=tenant_id, cutoff=cutoff, ids=ids)
                sessions += purged.sessions
                messages += purged.messages
        if sessions:
            report.tenants[slug] = TenantPurge(sessions=sessions, messages=messages)
    return report

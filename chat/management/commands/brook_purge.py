"""`manage.py brook_purge`: purge sessions idle past their tenant's retention (docs/tenants.md, "Retention")."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from chat.retention import sessions_purge
from chat.services import logs_compact


def _batch_size(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number.") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}.")
    return value


def _logs_compact_all(*, now: datetime, batch: int) -> int:
    """Every expired log, not the one batch per tenant that a sweep takes; each call marks what it compacted."""
    total = 0
    while compacted := logs_compact(now=now, batch=batch):
        total += compacted
    return total


class Command(BaseCommand):
    help = "Delete sessions idle longer than their tenant's retention_days, with their messages. Prints JSON."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Count what would be purged; delete nothing.")
        parser.add_argument(
            "--batch", type=_batch_size, default=500, metavar="N", help="Sessions per transaction (default 500)."
        )
        parser.add_argument(
            "--logs",
            action="store_true",
            help="Also compact the event logs past log_retention_days now, without waiting for the sweeper.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["dry_run"] and options["logs"]:
            raise CommandError("--logs cannot be combined with --dry-run: log compaction has no dry run.")
        now = timezone.now()
        report = sessions_purge(now=now, batch=options["batch"], dry_run=options["dry_run"])
        compacted = _logs_compact_all(now=now, batch=options["batch"]) if options["logs"] else None
        summary = {**asdict(report), "sessions": report.sessions, "messages": report.messages}
        self.stdout.write(json.dumps({**summary, "logs_compacted": compacted}))

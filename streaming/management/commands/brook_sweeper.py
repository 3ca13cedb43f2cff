"""`manage.py brook_sweeper`: the sweeper as a process of its own (every worker also runs one; docs/delivery.md)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from streaming.run import runner
from streaming.run.sweeper import sweep_forever, sweep_once


class Command(BaseCommand):
    help = "End replies whose worker died, restart stalled queues, compact expired logs."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="One pass, print what it did as JSON, and exit.")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["once"]:
            report = asyncio.run(self._once())
            self.stdout.write(json.dumps(asdict(report)))
            return
        interval = float(settings.BROOK_SWEEP_SECONDS) or 5.0
        self.stdout.write(f"Sweeping every {interval:.0f} s; Ctrl-C stops.")
        asyncio.run(sweep_forever(interval))

    @staticmethod
    async def _once() -> Any:
        report = await sweep_once()
        await runner.drain()  # replies it restarted run in this process: let them finish first
        return report

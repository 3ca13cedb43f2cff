"""`make bench-limits`: what Brook's limits cost per request (docs/security.md, "Limits").

Prints the median and p99 time of one rate check (two rates, as a message pays: session and tenant) and of taking and
giving back an open-stream slot, with the local-memory cache and, when REDIS_URL is set, with Redis. Not a test.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DEBUG", "1")

import django

django.setup()

from django.conf import settings  # noqa: E402

from core.limits import Rate, rate_check, stream_slot_take  # noqa: E402

ROUNDS = 2000


def timed(action: Callable[[int], None]) -> tuple[float, float]:
    """Median and p99 in microseconds of ``action`` over ROUNDS calls."""
    samples = []
    for n in range(ROUNDS):
        started = time.perf_counter()
        action(n)
        samples.append((time.perf_counter() - started) * 1e6)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


def run() -> None:
    backend = "Redis" if settings.REDIS_URL else "local memory"
    run_id = uuid.uuid4().hex

    def message(n: int) -> None:
        rate_check(
            Rate("bench-session", f"{run_id}-{n % 100}", 1_000_000, "messages"),
            Rate("bench-tenant", run_id, 1_000_000, "messages"),
        )

    def stream(n: int) -> None:
        slot = stream_slot_take(tenant_id=0, session_id=f"{run_id}-{n % 100}", per_session=5, per_tenant=10_000)
        slot.release()

    for name, action in [("rate check (session + tenant)", message), ("stream slot take + release", stream)]:
        median, p99 = timed(action)
        print(f"  {name:32} {backend:13} median {median:7.0f} µs   p99 {p99:7.0f} µs")


if __name__ == "__main__":
    machine = platform.processor() or platform.machine()
    print(f"Brook limits, {platform.node()} ({machine}), {datetime.now(UTC):%Y-%m-%d}")
    print(f"  {ROUNDS} rounds each")
    run()

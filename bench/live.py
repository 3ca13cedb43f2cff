"""`make bench-live`: the event log's throughput, its database writes per answer, and first-token latency.

Prints figures with the machine and date; not a test. Uses a fresh SQLite file unless DATABASE_URL is set, and the
in-memory channel layer unless REDIS_URL is set (then Redis, as a multi-worker deployment has it).
"""

from __future__ import annotations

import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DEBUG", "1")
os.environ.setdefault("BROOK_SWEEP_SECONDS", "0")
if "DATABASE_URL" not in os.environ:
    os.environ["DATABASE_URL"] = f"sqlite:///{tempfile.mkdtemp()}/bench.sqlite3"

import django

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db.backends.signals import connection_created  # noqa: E402

WRITES: dict[str, Any] = {"n": 0, "on": False, "tables": {}}


def _count_writes(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
    verb = sql.lstrip()[:6].upper()
    if WRITES["on"] and verb in {"INSERT", "UPDATE", "DELETE"}:
        WRITES["n"] += 1
        table = sql.split('"')[1] if '"' in sql else "?"
        key = f"{verb.lower()} {table}"
        WRITES["tables"][key] = WRITES["tables"].get(key, 0) + 1
    return execute(sql, params, many, context)


def _install(sender: Any, connection: Any, **kwargs: Any) -> None:
    if _count_writes not in connection.execute_wrappers:  # the signal fires again on every reconnect
        connection.execute_wrappers.append(_count_writes)


connection_created.connect(_install)

from chat import services as chat_services  # noqa: E402
from chat.models import ChatSession  # noqa: E402
from core.db_bridge import db  # noqa: E402
from streaming.agents.base import Agent, Emitter, Turn  # noqa: E402
from streaming.agents.registry import registered  # noqa: E402
from streaming.live.reader import Heartbeat, follow  # noqa: E402
from streaming.run import runner  # noqa: E402
from tenants.models import Tenant  # noqa: E402
from tenants.services import tenant_create  # noqa: E402

# The bench tenant's agent: whichever Scripted agent the current measurement put here (streaming/agents/registry.py).
BENCH_AGENT = "bench-scripted"
_current: list[Agent] = []


class Scripted(Agent):
    """A model stand-in: one model-call step streaming ``tokens`` tokens, ``gap`` seconds apart."""

    name = "scripted"

    def __init__(self, tokens: int, gap: float, first_emit: list[float] | None = None) -> None:
        self.tokens, self.gap, self.first_emit = tokens, gap, first_emit

    async def run(self, conversation: Sequence[Turn], emit: Emitter) -> None:
        async with emit.step(kind="model_call", title="Calling the model"):
            for n in range(self.tokens):
                if n == 0 and self.first_emit is not None:
                    self.first_emit.append(time.perf_counter())
                await emit.text_delta(f" tok{n}")
                if self.gap:
                    await asyncio.sleep(self.gap)


def _new_reply(tenant: Any) -> Any:
    session = ChatSession.objects.create(tenant=tenant)
    return chat_services.message_submit(session=session, content="bench", delivery="poll").reply


async def run_with(agent: Agent, tenant: Any, reply: Any = None) -> Any:
    reply = reply or await db(_new_reply)(tenant)
    _current[:] = [agent]
    await runner.run_reply(reply_id=reply.id)
    return reply


async def main() -> None:
    tenant = await db(tenant_create)(name=f"bench-{time.time()}", streaming_enabled=True, max_stream_seconds=600)
    await db(Tenant.objects.filter(pk=tenant.pk).update)(agent=BENCH_AGENT)
    print(f"# Brook live benchmark — {time.strftime('%Y-%m-%d %H:%M')} UTC")
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"database {django.db.connection.vendor}, layer {'redis' if os.environ.get('REDIS_URL') else 'in-memory'}"
    )

    # 1. Throughput: tokens relayed into the log as fast as the agent can emit them.
    tokens = 20_000
    started = time.perf_counter()
    await run_with(Scripted(tokens, 0), tenant)
    elapsed = time.perf_counter() - started
    print(f"tokens through the log, no pauses: {tokens / elapsed:,.0f} tokens/s ({tokens} tokens in {elapsed:.2f} s)")

    # 2. Writes for a 1,000-token answer streamed over 10 seconds.
    reply = await db(_new_reply)(tenant)
    WRITES["n"], WRITES["on"], WRITES["tables"] = 0, True, {}
    started = time.perf_counter()
    await run_with(Scripted(1000, 0.01), tenant, reply)
    WRITES["on"] = False
    breakdown = ", ".join(f"{key} {count}" for key, count in sorted(WRITES["tables"].items()))
    print(
        f"database writes for a 1,000-token answer over {time.perf_counter() - started:.1f} s "
        f"(claim to terminal event): {WRITES['n']} (goal ≤ 50 for 10 s) — {breakdown}"
    )

    # 3. First-token latency: agent emits its first token → a follower of the log receives it.
    latencies = []
    for _ in range(30):
        first_emit: list[float] = []
        reply = await db(_new_reply)(tenant)
        received: list[float] = []

        async def watch(reply_id: Any = reply.id, received: list[float] = received) -> None:
            async for item in follow(reply_id, 0):
                if isinstance(item, Heartbeat):
                    continue
                if item.type == "text.delta" and not received:
                    received.append(time.perf_counter())
                if item.is_terminal:
                    return

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.01)
        await run_with(Scripted(20, 0.001, first_emit), tenant, reply)
        await asyncio.wait_for(watcher, 10)
        latencies.append((received[0] - first_emit[0]) * 1000)
    latencies.sort()
    p50 = statistics.median(latencies)
    p95 = latencies[int(len(latencies) * 0.95) - 1]
    print(
        f"first token, agent emit → follower receives (stored, then published): p50 {p50:.2f} ms, "
        f"p95 {p95:.2f} ms over {len(latencies)} runs (goal p50 ≤ 5 ms)"
    )


if __name__ == "__main__":
    call_command("migrate", verbosity=0)
    with registered(BENCH_AGENT, lambda tenant: _current[0]):
        asyncio.run(main())

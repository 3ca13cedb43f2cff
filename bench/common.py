"""What the benchmarks that run Brook's production stack share (bench/servers.py, bench/relay.py).

Import it after ``django.setup()``: ``ensure_tenant`` writes tenants through the settings' database.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from deploy.stack import NGINX, Stack, StackConfig, free_ports
from tenants.models import Tenant
from tenants.services import tenant_create, tenant_update


class BenchError(RuntimeError):
    pass


# --- HTTP helpers ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Session:
    id: str
    token: str


def api(port: int, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    return response.status, (json.loads(data) if data else None)


def new_session(port: int, tenant_key: str) -> Session:
    status, body = api(port, "POST", "/api/v1/sessions", {"tenant": tenant_key})
    if status != 201:
        raise BenchError(f"POST /api/v1/sessions answered {status}: {body}")
    return Session(id=str(body["id"]), token=str(body["token"]))


def send(port: int, session: Session, content: str) -> str:
    """Post a visitor message; the id of the reply it starts."""
    path = f"/api/v1/sessions/{session.id}/messages"
    status, body = api(port, "POST", path, {"content": content, "mode": "poll"}, session.token)
    if status != 202:
        raise BenchError(f"POST {path} answered {status}: {body}")
    return str(body["id"])


def cancel(port: int, session: Session, reply_id: str) -> None:
    with contextlib.suppress(OSError):
        api(port, "POST", f"/api/v1/messages/{reply_id}/cancel", token=session.token)


def stream_request(port: int, reply_id: str, token: str) -> bytes:
    return (
        f"GET /api/v1/messages/{reply_id}/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Accept: text/event-stream\r\nAuthorization: Bearer {token}\r\n\r\n"
    ).encode()


# --- Processes and the database -------------------------------------------------------------------------------------


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"no VmRSS for pid {pid}")


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest rank: the smallest sample with at least ``q`` of them at or below it."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def admin_url(database_url: str) -> str:
    """The server's ``postgres`` database, so that the bench's own queries do not count in its database's figures."""
    parts = urlsplit(database_url)
    return urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))


def pg_connections(database_url: str) -> int:
    """Connections to the bench's database, from pg_stat_activity."""
    name = urlsplit(database_url).path.lstrip("/")
    with psycopg.connect(admin_url(database_url), autocommit=True, connect_timeout=5) as conn:
        row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s", [name]).fetchone()
    return int(row[0]) if row else 0


def ensure_tenant(public_key: str, **fields: Any) -> Tenant:
    """The bench's tenant with this key, created or brought to ``fields`` (runs reuse it)."""
    tenant = Tenant.objects.filter(public_key=public_key).first()
    if tenant is None:
        return tenant_create(public_key=public_key, **fields)
    return tenant_update(tenant=tenant, **fields)


def nginx_version() -> str:
    done = subprocess.run([NGINX, "-v"], capture_output=True, text=True)  # noqa: S603 - a fixed path
    return done.stderr.strip().rpartition("/")[2]


# --- Stacks ---------------------------------------------------------------------------------------------------------


def restart_workers(stack: Stack, env: dict[str, str], indexes: Sequence[int] | None = None) -> None:
    """The stack's workers (or those of ``indexes``) again, with more settings; nginx stays up."""
    stack.config.env.update(env)
    for index in range(stack.config.workers) if indexes is None else indexes:
        stack.stop_part(f"worker-{index}")
        stack.start_worker(index, wait=True)
    deadline = time.monotonic() + 10
    while api(stack.config.port, "GET", "/healthz")[0] != 200:  # nginx may have marked a worker down a moment
        if time.monotonic() > deadline:
            raise BenchError("nginx did not reach the restarted workers")
        time.sleep(0.2)


@contextlib.contextmanager
def stacks_running(
    servers: Sequence[str], *, name: str, database_url: str, workers: int, env: dict[str, str]
) -> Iterator[dict[str, Stack]]:
    """One stack per server (nginx, ``workers`` workers, a Redis of its own; not started yet), stopped again whatever
    happens (Ctrl-C and SIGTERM included). Their logs stay in a temporary folder if the block fails."""
    state = Path(tempfile.mkdtemp(prefix=f"brook-{name}-"))
    stacks: dict[str, Stack] = {}
    per_stack = 2 + workers  # nginx, the workers, Redis
    ports = free_ports(per_stack * len(servers))
    for index, server in enumerate(servers):
        nginx, *worker_ports, redis_port = ports[per_stack * index : per_stack * (index + 1)]
        stacks[server] = Stack(
            StackConfig(
                state_dir=state / server,
                database_url=database_url,
                workers=workers,
                servers=(server,),
                port=nginx,
                worker_ports=tuple(worker_ports),
                redis_port=redis_port,
                env=dict(env),
                prepare=index == 0,  # one database: the first stack creates and migrates it
            )
        )
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    failed = True
    try:
        yield stacks
        failed = False
    finally:
        # A second Ctrl-C (or SIGTERM) must not leave a stack behind.
        interrupt = signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            for stack in stacks.values():
                stack.stop()
        finally:
            signal.signal(signal.SIGINT, interrupt)
            signal.signal(signal.SIGTERM, previous)
        if failed:
            print(f"\nlogs: {state}/<server>/logs/", file=sys.stderr)
        else:
            shutil.rmtree(state, ignore_errors=True)


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)

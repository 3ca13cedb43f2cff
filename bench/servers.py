"""`make bench-servers`: Daphne and uvicorn, each as the one worker of Brook's production stack behind nginx.

Two stacks run side by side (deploy/stack.py: nginx, one worker, a Redis of its own; PostgreSQL database
brook_bench_servers, created if missing), and the measurements alternate between them, three rounds, medians
reported. For each server:

1. The worker's RSS at idle right after start.
2. Relay through nginx SSE of one reply as fast as the agent writes it (one event per delta, BROOK_DELTA_FLUSH_MS=0):
   the demo agent's, and a long one (1,000 tokens) from the LLM agent on a local fake model API; time from POST to
   the terminal event, events/s, and that the SSE ids are 1..N. Settings as shipped.

Then each worker restarts with quiet replies (BROOK_DEMO_STEP_SECONDS=120) and DATABASE_CONN_MAX_AGE=0 (QUIET_ENV
says why), and:

3. 50 idle SSE streams (replies sitting in the demo agent's first step): worker RSS per stream, threads and database
   connections (once per server, on the freshly restarted worker).
4. GET /healthz (a ``SELECT 1``) through nginx, 16 keep-alive clients for 5 s: requests/s, p50 and p99 latency; the
   same for a 404 (no database) for 3 s.
5. Time to the first SSE byte (the ``: connected`` comment) through nginx on a running reply, 50 opens a round.

Prints a markdown table with the machine and date, and writes the same figures to artifacts/bench-servers.json. Not a
test. The bench process, nginx, the workers, Redis and PostgreSQL all share this machine: run it on a quiet one (the
header prints the load average at the start).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import platform
import socket
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATABASE_NAME = "brook_bench_servers"
DATABASE_URL = f"postgres://postgres@127.0.0.1:5432/{DATABASE_NAME}"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DEBUG", "1")  # this process only: the workers run with DEBUG=0 (deploy/stack.py)
os.environ["DATABASE_URL"] = DATABASE_URL
os.environ.pop("REDIS_URL", None)  # this process writes tenants only; each stack brings its own Redis

import daphne  # noqa: E402
import django  # noqa: E402
import uvicorn  # noqa: E402

django.setup()

from bench.common import (  # noqa: E402
    BenchError,
    Session,
    cancel,
    ensure_tenant,
    new_session,
    nginx_version,
    percentile,
    pg_connections,
    restart_workers,
    rss_kib,
    send,
    stacks_running,
    stream_request,
    threads,
)
from bench.upstream import chunk  # noqa: E402
from deploy.stack import Stack  # noqa: E402
from tenants.models import Agent  # noqa: E402

SERVERS = ("daphne", "uvicorn")
ROUNDS = 3
LOAD_CLIENTS = 16
HEALTHZ_SECONDS = 5.0
NOT_FOUND_SECONDS = 3.0
TTFB_OPENS = 50
# Not 500: every open SSE stream holds a thread of the worker and a PostgreSQL connection of its own (a request's
# database calls run in its own thread under ASGI, core/db_bridge.py's included), and PostgreSQL allows 100 connections.
IDLE_STREAMS = 50
IDLE_SESSIONS = 5  # 10 streams each; a session may hold 100 (Tenant.max_streams_per_session)
LONG_TOKENS = 1000
TERMINAL = {"message.completed", "message.cancelled", "message.failed"}
DEMO_KEY, LLM_KEY = "bench-servers-demo", "bench-servers-llm"
# A question, so the demo agent writes its longest answer. It quotes at most 120 characters of it, so a longer text
# does not give a longer answer: about 130 text deltas whatever the input.
DEMO_QUESTION = (
    "How do rivers carve canyons through hard rock over millions of years, and why do some rivers meander across "
    "wide valleys while others run straight and fast through narrow gorges? " * 20
)
WORKER_ENV = {
    "BROOK_DEMO_TOKENS_PER_SECOND": "0",
    "BROOK_DEMO_STEP_SECONDS": "0",
    "BROOK_DELTA_FLUSH_MS": "0",  # one SSE event per token: the relay figures count what the server writes
    "BROOK_SWEEP_SECONDS": "0",  # nothing in the background
    "BROOK_LLM_MODEL": "bench-model",
    "BROOK_LLM_API_KEY": "bench-key",
}
# Phase two: replies sit quietly in the demo agent's first step (streams open on them and wait), and database
# connections close at the end of each request. Under ASGI each request's database calls run in a thread of the
# request's own, and with the default DATABASE_CONN_MAX_AGE=60 each such thread's connection stays open after the
# request until garbage collection: 16 clients on /healthz took one worker to PostgreSQL's 100 connections (and 503s),
# and 40 streams, once closed, left their 40 connections open. Phase one (the relay) keeps the default: with 0, the
# reply's runner reconnects before every write and relays at less than half the rate.
QUIET_ENV = {"BROOK_DEMO_STEP_SECONDS": "120", "DATABASE_CONN_MAX_AGE": "0"}
TENANT_LIMITS: dict[str, Any] = {
    "streaming_enabled": True,
    "streaming_percentage": 100,
    "sessions_per_ip_per_minute": 10_000,  # every request here comes from 127.0.0.1
    "messages_per_minute": 10_000,
    "tenant_messages_per_minute": 1_000_000,
    "max_streams_per_session": 100,
    "max_concurrent_streams": 10_000,
    "max_stream_seconds": 600,
    "max_message_length": 100_000,
}


# --- A local model API for the long reply ---------------------------------------------------------------------------


def long_answer_tokens() -> list[str]:
    return [f" w{n}" for n in range(LONG_TOKENS)]


class FakeModel:
    """OpenAI-compatible /v1/chat/completions that streams ``LONG_TOKENS`` content chunks as fast as it can."""

    def __init__(self) -> None:
        usage = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": "bench-model",
            "choices": [],
            "usage": {"prompt_tokens": 10, "completion_tokens": LONG_TOKENS, "total_tokens": 10 + LONG_TOKENS},
        }
        body = b"".join(chunk({"content": token}) for token in long_answer_tokens())
        body += chunk({}, "stop") + b"data: " + json.dumps(usage).encode() + b"\n\ndata: [DONE]\n\n"

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- HTTP helpers ---------------------------------------------------------------------------------------------------


def until_connected(sock: socket.socket) -> bytes:
    """Read an SSE response until its ``: connected`` comment has arrived; what was read."""
    received = b""
    while b": connected" not in received:
        chunk = sock.recv(65536)
        if not chunk:
            raise BenchError(f"the stream closed before ': connected': {received[:300]!r}")
        received += chunk
    return received


def open_stream(port: int, reply_id: str, token: str) -> socket.socket:
    """An SSE connection through nginx, returned once ``: connected`` has arrived; the caller closes it."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    try:
        sock.sendall(stream_request(port, reply_id, token))
        received = until_connected(sock)
        if not received.startswith(b"HTTP/1.1 200"):
            raise BenchError(f"the stream answered {received[:300]!r}")
    except BaseException:
        sock.close()
        raise
    return sock


# --- The measurements -----------------------------------------------------------------------------------------------


async def _load(port: int, path: str, status: str, seconds: float) -> tuple[list[float], list[str]]:
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.monotonic() + seconds

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.monotonic() < deadline:
                started = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
                if "content-length" in headers:
                    await reader.readexactly(int(headers["content-length"]))
                elif headers.get("transfer-encoding") == "chunked":
                    while True:
                        size = int((await reader.readuntil(b"\r\n")).strip(), 16)
                        await reader.readexactly(size + 2)
                        if size == 0:
                            break
                latencies.append(time.perf_counter() - started)
                if lines[0].split()[1] != status:
                    errors.append(lines[0])
                if headers.get("connection", "").lower() == "close":  # nginx: keepalive_requests reached
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
        finally:
            writer.close()

    await asyncio.gather(*(client() for _ in range(LOAD_CLIENTS)))
    return latencies, errors


def load(port: int, path: str = "/healthz", status: str = "200", seconds: float = HEALTHZ_SECONDS) -> dict[str, float]:
    """``LOAD_CLIENTS`` keep-alive connections through nginx, each sending GET ``path`` again as soon as answered."""
    started = time.monotonic()
    latencies, errors = asyncio.run(_load(port, path, status, seconds))
    elapsed = time.monotonic() - started
    if errors:
        raise BenchError(f"GET {path}: {len(errors)} of {len(latencies)} answers were not {status}: {errors[0]}")
    return {
        "requests_per_second": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
    }


def relay(port: int, tenant_key: str, content: str, expected_text: str | None = None) -> dict[str, Any]:
    """POST a message, follow its reply over SSE through nginx to the terminal event; time and order."""
    session = new_session(port, tenant_key)
    started = time.perf_counter()
    reply_id = send(port, session, content)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    ids: list[int] = []
    types: list[str] = []
    text: list[str] = []
    try:
        conn.request(
            "GET",
            f"/api/v1/messages/{reply_id}/stream",
            headers={"Accept": "text/event-stream", "Authorization": f"Bearer {session.token}"},
        )
        response = conn.getresponse()
        if response.status != 200:
            raise BenchError(f"the stream answered {response.status}: {response.read()[:300]!r}")
        pending = b""
        while not types or types[-1] not in TERMINAL:
            chunk = response.read1(65536)
            if not chunk:
                raise BenchError("the stream closed before its terminal event")
            *frames, pending = (pending + chunk).split(b"\n\n")
            for frame in frames:
                fields = dict(
                    line.split(": ", 1) for line in frame.decode().split("\n") if line and not line.startswith(":")
                )
                if "id" not in fields:  # the retry: line
                    continue
                ids.append(int(fields["id"]))
                types.append(fields["event"])
                if fields["event"] == "text.delta":
                    text.append(json.loads(fields["data"])["delta"])
        elapsed = time.perf_counter() - started
    finally:
        conn.close()
    order_ok = ids == list(range(1, len(ids) + 1))
    text_ok = expected_text is None or "".join(text) == expected_text
    return {
        "events": len(ids),
        "text_deltas": types.count("text.delta"),
        "terminal": types[-1],
        "seconds": elapsed,
        "events_per_second": len(ids) / elapsed,
        "order_ok": order_ok,
        "text_ok": text_ok,
    }


def ttfb(port: int, tenant_key: str) -> dict[str, float]:
    """Time from connecting to ``: connected`` through nginx, ``TTFB_OPENS`` new connections to one running reply."""
    session = new_session(port, tenant_key)
    reply_id = send(port, session, "Hello, are you there?")
    request = stream_request(port, reply_id, session.token)
    samples = []
    try:
        for _ in range(TTFB_OPENS):
            started = time.perf_counter()
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                sock.sendall(request)
                until_connected(sock)
                samples.append(time.perf_counter() - started)
    finally:
        cancel(port, session, reply_id)
    return {"p50_ms": percentile(samples, 0.5) * 1000, "p99_ms": percentile(samples, 0.99) * 1000}


def idle_streams(stack: Stack, tenant_key: str) -> dict[str, float]:
    """Worker RSS, threads and database connections before and with ``IDLE_STREAMS`` quiet SSE streams through
    nginx, and RSS after closing them."""
    port = stack.config.port
    pid = stack.pid("worker-0")
    assert pid is not None  # noqa: S101 - the stack is running
    replies: list[tuple[Session, str]] = []
    streams: list[socket.socket] = []
    try:
        # Warm up the stream path (imports, pools, the channel layer's connection) before the baseline.
        warm = new_session(port, tenant_key)
        replies.append((warm, send(port, warm, "Warm up, please.")))
        for sock in [open_stream(port, replies[0][1], warm.token) for _ in range(10)]:
            sock.close()
        for _ in range(IDLE_SESSIONS):
            session = new_session(port, tenant_key)
            replies.append((session, send(port, session, "Hello, are you there?")))
        time.sleep(2)
        before, threads_before, connections_before = rss_kib(pid), threads(pid), pg_connections(DATABASE_URL)
        started = time.perf_counter()
        per_session = IDLE_STREAMS // IDLE_SESSIONS
        for session, reply_id in replies[1:]:
            streams += [open_stream(port, reply_id, session.token) for _ in range(per_session)]
        opened_in = time.perf_counter() - started
        time.sleep(2)  # each stream subscribes to its reply's group after ': connected'
        with_streams, threads_with, connections_with = rss_kib(pid), threads(pid), pg_connections(DATABASE_URL)
        for sock in streams:
            sock.close()
        streams.clear()
        time.sleep(2)
        after = rss_kib(pid)
    finally:
        for sock in streams:
            sock.close()
        for session, reply_id in replies:
            cancel(port, session, reply_id)
    return {
        "streams": IDLE_STREAMS,
        "open_seconds": opened_in,
        "rss_before_mib": before / 1024,
        "rss_with_streams_mib": with_streams / 1024,
        "rss_after_close_mib": after / 1024,
        "kib_per_stream": (with_streams - before) / IDLE_STREAMS,
        "threads_before": threads_before,
        "threads_with_streams": threads_with,
        "pg_connections_before": connections_before,
        "pg_connections_with_streams": connections_with,
    }


# --- Reporting ------------------------------------------------------------------------------------------------------


@dataclass
class Results:
    rounds: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {s: [] for s in SERVERS})
    once: dict[str, dict[str, Any]] = field(default_factory=lambda: {s: {} for s in SERVERS})

    def median(self, server: str, *path: str) -> float:
        values = []
        for round_ in self.rounds[server]:
            value: Any = round_
            for key in path:
                value = value[key]
            values.append(float(value))
        return statistics.median(values)

    def every(self, server: str, *path: str) -> list[Any]:
        values = []
        for round_ in self.rounds[server]:
            value: Any = round_
            for key in path:
                value = value[key]
            values.append(value)
        return values


def table(results: Results) -> tuple[list[list[str]], dict[str, dict[str, Any]]]:
    rows: list[list[str]] = []
    figures: dict[str, dict[str, Any]] = {s: {} for s in SERVERS}

    def row(label: str, key: str, value: Callable[[str], Any], fmt: str) -> None:
        values = {server: value(server) for server in SERVERS}
        for server in SERVERS:
            figures[server][key] = values[server]
        rows.append([label, *(format(values[s], fmt) for s in SERVERS)])

    def order(kind: str) -> Callable[[str], str]:
        def ok(server: str) -> str:
            rounds = results.every(server, kind)
            return "order ok" if all(r["order_ok"] and r["text_ok"] for r in rounds) else "ORDER BROKEN"

        return ok

    def median_of(*path: str) -> Callable[[str], float]:
        return lambda server: results.median(server, *path)

    once = results.once
    row("worker RSS at idle right after start (MiB)", "rss_start_mib", lambda s: once[s]["rss_start_mib"], ".1f")
    for kind, label in [("healthz", "GET /healthz (SELECT 1)"), ("not_found", "GET /no/such/page (404, no database)")]:
        row(
            f"{label}, {LOAD_CLIENTS} keep-alive clients: requests/s",
            f"{kind}_rps",
            median_of(kind, "requests_per_second"),
            ",.0f",
        )
        for q in ("p50", "p99"):
            row(
                f"{label}: {q} latency (ms)",
                f"{kind}_{q}_ms",
                median_of(kind, f"{q}_ms"),
                ".1f",
            )
    row("SSE open → `: connected`: p50 (ms)", "ttfb_p50_ms", lambda s: results.median(s, "ttfb", "p50_ms"), ".2f")
    row(
        f"SSE open → `: connected`: p99 (ms, of {TTFB_OPENS})",
        "ttfb_p99_ms",
        lambda s: results.median(s, "ttfb", "p99_ms"),
        ".2f",
    )
    row(
        "demo reply, unpaced: events (text.delta)",
        "demo_events",
        lambda s: f"{results.median(s, 'demo', 'events'):.0f} ({results.median(s, 'demo', 'text_deltas'):.0f})",
        "",
    )
    row(
        "demo reply: POST → terminal event (ms)",
        "demo_ms",
        lambda s: results.median(s, "demo", "seconds") * 1000,
        ",.0f",
    )
    row(
        "demo reply: events/s",
        "demo_events_per_second",
        lambda s: results.median(s, "demo", "events_per_second"),
        ",.0f",
    )
    row("demo reply: SSE ids 1..N", "demo_order", order("demo"), "")
    row(
        f"long reply ({LONG_TOKENS:,} tokens, LLM agent, local fake model): events",
        "long_events",
        lambda s: f"{results.median(s, 'long', 'events'):.0f} ({results.median(s, 'long', 'text_deltas'):.0f})",
        "",
    )
    row("long reply: POST → terminal event (s)", "long_seconds", lambda s: results.median(s, "long", "seconds"), ".2f")
    row(
        "long reply: events/s",
        "long_events_per_second",
        lambda s: results.median(s, "long", "events_per_second"),
        ",.0f",
    )
    row("long reply: SSE ids 1..N, text whole", "long_order", order("long"), "")
    row(
        f"{IDLE_STREAMS} idle SSE streams: worker RSS before → with (MiB)",
        "idle_rss_mib",
        lambda s: f"{once[s]['idle']['rss_before_mib']:.1f} → {once[s]['idle']['rss_with_streams_mib']:.1f}",
        "",
    )
    row("idle streams: KiB per stream", "idle_kib_per_stream", lambda s: once[s]["idle"]["kib_per_stream"], ".1f")
    row(
        "idle streams: worker threads before → with",
        "idle_threads",
        lambda s: f"{once[s]['idle']['threads_before']} → {once[s]['idle']['threads_with_streams']}",
        "",
    )
    row(
        "idle streams: PostgreSQL connections before → with",
        "idle_pg_connections",
        lambda s: f"{once[s]['idle']['pg_connections_before']} → {once[s]['idle']['pg_connections_with_streams']}",
        "",
    )
    row(
        "idle streams: RSS 2 s after closing them (MiB)",
        "idle_rss_after_close_mib",
        lambda s: once[s]["idle"]["rss_after_close_mib"],
        ".1f",
    )
    row(
        f"idle streams: time to open all {IDLE_STREAMS} (s)",
        "idle_open_seconds",
        lambda s: once[s]["idle"]["open_seconds"],
        ".2f",
    )
    return rows, figures


# --- Main -----------------------------------------------------------------------------------------------------------


def main() -> None:
    started = time.monotonic()
    now = datetime.now(UTC)
    machine = platform.processor() or platform.machine()
    load_at_start = os.getloadavg()[0]
    versions = {
        "python": platform.python_version(),
        "daphne": daphne.__version__,
        "uvicorn": uvicorn.__version__,
        "django": django.get_version(),
        "nginx": nginx_version(),
    }
    header = [
        f"# Brook ASGI servers behind nginx — {now:%Y-%m-%d %H:%M} UTC",
        "",
        f"machine: {platform.node()} ({machine}, {platform.platform()}), {os.cpu_count()} CPUs; "
        f"Python {versions['python']}, Django {versions['django']}, Daphne {versions['daphne']}, "
        f"uvicorn {versions['uvicorn']}, nginx {versions['nginx']}",
        f"load average at the start: {load_at_start:.2f} (1 min); "
        f"one worker per server, nginx in front, own Redis each, PostgreSQL {DATABASE_NAME}; "
        f"medians of {ROUNDS} rounds alternating servers (idle streams: once each, on a freshly restarted worker)",
    ]
    for line in header[:2]:
        print(line, flush=True)
    model = FakeModel()
    results = Results()
    try:
        with stacks_running(
            SERVERS,
            name="bench-servers",
            database_url=DATABASE_URL,
            workers=1,
            env={**WORKER_ENV, "BROOK_LLM_BASE_URL": model.base_url},
        ) as stacks:
            for server, stack in stacks.items():
                print(f"starting {server} ...", flush=True)
                stack.start()
                pid = stack.pid("worker-0")
                assert pid is not None  # noqa: S101 - start() succeeded
                results.once[server]["rss_start_mib"] = rss_kib(pid) / 1024
            ensure_tenant(DEMO_KEY, name="bench servers (demo agent)", agent=Agent.DEMO, **TENANT_LIMITS)
            ensure_tenant(
                LLM_KEY,
                name="bench servers (LLM agent)",
                agent=Agent.LLM,
                llm_tools_enabled=False,
                llm_max_tokens=100_000,
                **TENANT_LIMITS,
            )
            django.db.connection.close()  # PostgreSQL's connections are scarce here (see QUIET_ENV)
            expected = "".join(long_answer_tokens())

            # Phase one, the settings as shipped: relays.
            for stack in stacks.values():  # warm both up: first requests import and connect
                relay(stack.config.port, DEMO_KEY, DEMO_QUESTION)
                relay(stack.config.port, LLM_KEY, "Warm up.", expected)
            for n in range(ROUNDS):
                for server in SERVERS if n % 2 == 0 else SERVERS[::-1]:
                    port = stacks[server].config.port
                    print(f"round {n + 1}: {server}: relays ...", flush=True)
                    results.rounds[server].append(
                        {
                            "demo": relay(port, DEMO_KEY, DEMO_QUESTION),
                            "long": relay(port, LLM_KEY, "Write something long.", expected),
                        }
                    )

            # Phase two: quiet replies, connections closed after each request.
            for server, stack in stacks.items():
                print(f"{server}: restarting the worker with {' '.join(f'{k}={v}' for k, v in QUIET_ENV.items())} ...")
                restart_workers(stack, QUIET_ENV)
                load(stack.config.port, seconds=1)  # warm up
            for server, stack in stacks.items():
                print(f"{server}: {IDLE_STREAMS} idle streams ...", flush=True)
                results.once[server]["idle"] = idle_streams(stack, DEMO_KEY)
            for n in range(ROUNDS):
                for server in SERVERS if n % 2 == 0 else SERVERS[::-1]:
                    port = stacks[server].config.port
                    print(f"round {n + 1}: {server}: requests and stream opens ...", flush=True)
                    results.rounds[server][n] |= {
                        "healthz": load(port),
                        "not_found": load(port, "/no/such/page", "404", NOT_FOUND_SECONDS),
                        "ttfb": ttfb(port, DEMO_KEY),
                    }
    finally:
        model.stop()

    rows, figures = table(results)
    notes = [
        "- relays ran with the settings as shipped; everything else after a restart of each worker with "
        "DATABASE_CONN_MAX_AGE=0 (and BROOK_DEMO_STEP_SECONDS=120): with the default 60, each request's thread keeps "
        "its database connection after the request, and 16 clients on /healthz exhaust PostgreSQL's 100 connections.",
        f"- {IDLE_STREAMS} idle streams, not 500: each open stream holds a worker thread and a PostgreSQL connection "
        "of its own (see the threads and connections rows), so one worker cannot hold more than about "
        "max_connections (100) streams.",
        f"- demo reply: the demo agent quotes at most 120 characters of the question, so its answer is about "
        f"{results.median(SERVERS[0], 'demo', 'text_deltas'):.0f} text deltas whatever the input, over in about "
        f"{results.median(SERVERS[0], 'demo', 'seconds'):.1f} s unpaced: too short to tell the servers apart. The long "
        f"reply ({LONG_TOKENS:,} tokens from a local fake model API, one event each) is the relay figure; both are "
        "bound by one database write per event.",
        "- stream opens (and /healthz) run with DATABASE_CONN_MAX_AGE=0, so each open connects to PostgreSQL afresh "
        "for each of its database calls before `: connected`.",
        "- every figure includes nginx, the bench client, Redis and PostgreSQL on the same machine; the worker runs "
        "the reply and serves its stream in the same process.",
    ]
    print("\n" + "\n".join(header[2:]) + "\n")
    width = max(len(label) for label, *_ in rows)
    print(f"| {'figure':{width}} | {SERVERS[0]:>16} | {SERVERS[1]:>16} |")
    print(f"|{'-' * (width + 2)}|{'-' * 17}:|{'-' * 17}:|")
    for label, first, second in rows:
        print(f"| {label:{width}} | {first:>16} | {second:>16} |")
    print("\n" + "\n".join(notes))
    print(f"\n(whole run: {time.monotonic() - started:.0f} s)")

    out = ROOT / "artifacts" / "bench-servers.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "date": now.isoformat(timespec="seconds"),
                "machine": {
                    "node": platform.node(),
                    "platform": platform.platform(),
                    "cpus": os.cpu_count(),
                    "load_average_at_start": load_at_start,
                },
                "versions": versions,
                "setup": {
                    "rounds": ROUNDS,
                    "load_clients": LOAD_CLIENTS,
                    "healthz_seconds": HEALTHZ_SECONDS,
                    "not_found_seconds": NOT_FOUND_SECONDS,
                    "ttfb_opens": TTFB_OPENS,
                    "idle_streams": IDLE_STREAMS,
                    "long_tokens": LONG_TOKENS,
                    "worker_env": WORKER_ENV,
                    "worker_env_phase_two": QUIET_ENV,
                },
                "figures": figures,
                "rounds": results.rounds,
                "once": results.once,
                "notes": notes,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"figures: {out.relative_to(ROOT)}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("interrupted (the stacks were stopped)", file=sys.stderr)
        sys.exit(130)

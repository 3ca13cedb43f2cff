"""`make bench`: Brook as a relay between a model API and chat widgets, against the goals of issue 8.

Two production-like stacks run side by side (deploy/stack.py: nginx, two workers, a Redis of its own; PostgreSQL
database brook_bench_relay, created if missing), one on Daphne and one on uvicorn, and every measurement alternates
between them, round by round (medians of ``--rounds``, default 3). The LLM agent of a bench tenant talks to a local
OpenAI-compatible model API (bench/upstream.py, a process of its own) that streams real ``data: {chunk}`` frames
with a set time to first token and token rate. Measured:

1. Added time to first token at 1, 10 and 100 concurrent streams, p50 and p99: through Brook (POST a message with
   ``mode: stream`` through nginx, until the first ``text.delta``) minus direct (the same HTTP client, httpx2, the
   one under the ``openai`` SDK that Brook's worker uses, reading the model API itself), both timed from sending the
   request; the model API waits 50 ms before the first token on both paths. Direct and Brook waves alternate.
2. Tokens per second relayed by one worker, one token per upstream chunk, as fast as the model API writes them, at
   1 and 4 concurrent streams posted straight to worker 0; the client checks the joined text and the SSE ids.
3. Idle SSE streams held by one worker (straight to worker 0's port: nginx would spread them over both workers),
   up to 2,000, on demo-agent replies that sit in their first step: RSS per stream, threads, PostgreSQL
   connections and the worker's CPU at each step. Once per server, on a freshly restarted worker.
4. Database transactions per 1,000-token answer (``pg_stat_database.xact_commit`` of the bench database, less an
   idle baseline over the same time), at a realistic rate (``--writes-rate``, 50 tokens/s) and as fast as possible,
   with the stored event rows and table rows written.
5. Stop: a reply running on worker A, its cancel POSTed to worker B; time from sending the cancel to the model API
   seeing its connection closed.
6. Fan-out across workers through Redis, with BROOK_DELTA_FLUSH_MS=0 (one event per token; worker A restarts for
   it): a reply on worker A with readers on A and on B; the model API stamps each token with its send time.

Prints a markdown table (machine, versions, goals, pass or fail), writes artifacts/bench-relay.json, plots into
docs/img/bench-relay-*.png and the generated section of docs/benchmarks.md. Not a test. The bench process, the model
API, nginx, the workers, Redis and PostgreSQL all share this machine: run it on a quiet one.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import platform
import re
import resource
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ParamSpec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATABASE_NAME = "brook_bench_relay"
DATABASE_URL = f"postgres://postgres@127.0.0.1:5432/{DATABASE_NAME}"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DEBUG", "1")  # this process only: the workers run with DEBUG=0 (deploy/stack.py)
os.environ["DATABASE_URL"] = DATABASE_URL
os.environ.pop("REDIS_URL", None)  # this process writes tenants only; each stack brings its own Redis

import daphne  # noqa: E402
import django  # noqa: E402
import httpx2  # noqa: E402
import matplotlib  # noqa: E402
import psycopg  # noqa: E402
import uvicorn  # noqa: E402

matplotlib.use("Agg")
django.setup()
logging.getLogger("httpx2").setLevel(logging.WARNING)  # not a line per request

from matplotlib import pyplot  # noqa: E402

from bench.common import (  # noqa: E402
    BenchError,
    Session,
    admin_url,
    api,
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
from bench.upstream import MODEL, Upstream, numbered  # noqa: E402
from chat.models import Event  # noqa: E402
from deploy.stack import Stack  # noqa: E402
from tenants.models import Agent  # noqa: E402

P = ParamSpec("P")
STARTED = time.monotonic()
SERVERS = ("daphne", "uvicorn")
LLM_KEY, IDLE_KEY = "bench-relay-llm", "bench-relay-idle"
CONCURRENCY = (1, 10, 100)
UPSTREAM_TTFT_MS = 50
ANSWER_TOKENS = 1000  # the answer whose database writes are counted
TERMINAL = {"message.completed", "message.cancelled", "message.failed"}
# PostgreSQL (15) backends report their statistics at most once a second; an idle backend's last report can wait
# 10 s. Reading pg_stat_database this long after the last activity sees all of it.
STATS_SETTLE = 11.0
REPLY_TIMEOUT = 120.0  # the longest a client follows one reply
TTFT_TIMEOUT = 30.0
JSON_OUT = ROOT / "artifacts" / "bench-relay.json"
IMAGES = ROOT / "docs" / "img"
DOC = ROOT / "docs" / "benchmarks.md"
DOC_START, DOC_END = "<!-- bench:relay:start -->", "<!-- bench:relay:end -->"
WORKER_ENV = {
    "BROOK_SWEEP_SECONDS": "0",  # nothing in the background: the database counts are the answers' own
    "BROOK_DEMO_STEP_SECONDS": "3600",  # idle streams watch demo replies that sit in their first step
    "BROOK_LLM_MODEL": MODEL,
    "BROOK_LLM_API_KEY": "bench-key",
}
TENANT_LIMITS: dict[str, Any] = {
    "streaming_enabled": True,
    "streaming_percentage": 100,
    "sessions_per_ip_per_minute": 10_000,  # every request here comes from 127.0.0.1
    "messages_per_minute": 100_000,
    "tenant_messages_per_minute": 1_000_000,
    "max_streams_per_session": 100,
    "max_concurrent_streams": 10_000,
    "max_message_length": 100_000,
}
GOALS = {
    "added_ttft_p50_ms": 2.0,
    "added_ttft_p99_ms": 5.0,
    "tokens_per_second": 20_000.0,
    "idle_streams": 2000,
    "idle_kib_per_stream": 32.0,
    "transactions_per_answer": 50.0,
    "stop_p99_ms": 500.0,
    "fanout_p99_ms": 10.0,
}


@dataclass(frozen=True)
class Plan:
    rounds: int
    ttft_samples: dict[int, int]  # per concurrency and round, Brook and direct each (whole waves)
    relay_tokens: int  # in all, split between the streams
    relay_streams: tuple[int, ...]
    idle_steps: tuple[int, ...]
    idle_per_session: int
    idle_settle: float  # after opening streams, before measuring
    idle_cpu_window: float
    writes_rate: float
    writes_rounds: int  # counts, not timings: each answer costs its length and 22 s of waiting for the statistics
    baseline_seconds: float
    stops: int
    fanout_tokens: int
    fanout_rate: float
    quick: bool = False


DEFAULT = Plan(
    rounds=3,
    ttft_samples={1: 30, 10: 50, 100: 200},
    relay_tokens=20_000,
    relay_streams=(1, 4),
    idle_steps=(0, 500, 1000, 2000),
    idle_per_session=50,
    idle_settle=3.0,
    idle_cpu_window=5.0,  # one whole BROOK_STREAM_RECHECK_SECONDS period
    writes_rate=50.0,
    writes_rounds=1,
    baseline_seconds=20.0,
    stops=20,
    fanout_tokens=300,
    fanout_rate=100.0,
)
QUICK = Plan(
    rounds=1,
    ttft_samples={1: 10, 10: 20, 100: 100},
    relay_tokens=4000,
    relay_streams=(1, 4),
    idle_steps=(0, 100, 200),
    idle_per_session=50,
    idle_settle=1.0,
    idle_cpu_window=2.0,
    writes_rate=200.0,
    writes_rounds=1,
    baseline_seconds=3.0,
    stops=8,
    fanout_tokens=100,
    fanout_rate=100.0,
    quick=True,
)


# --- Clients ----------------------------------------------------------------------------------------------------------


@dataclass
class Trace:
    """What a client saw of one reply: times from ``time.monotonic()`` (CLOCK_MONOTONIC, as the model API's stamps)."""

    sent: float
    message_id: str = ""
    ids: list[int] = field(default_factory=list)
    deltas: list[str] = field(default_factory=list)
    delta_times: list[float] = field(default_factory=list)
    terminal: str = ""
    ended: float = 0.0
    first_event: float = 0.0  # Brook's: the reply's ``status: running``
    server_ttft_ms: int | None = None  # Brook's own: from the runner's start to the model's first token

    @property
    def first_delta(self) -> float:
        if not self.delta_times:
            raise BenchError(f"no text.delta before {self.terminal or 'the end'}")
        return self.delta_times[0]

    @property
    def text(self) -> str:
        return "".join(self.deltas)


def bearer(session: Session) -> dict[str, str]:
    return {"Authorization": f"Bearer {session.token}"}


async def frames(response: httpx2.Response) -> AsyncIterator[tuple[float, dict[str, str]]]:
    """A response's SSE frames as their fields, each with the time its last bytes arrived."""
    pending = b""
    async for data in response.aiter_raw():
        at = time.monotonic()
        *complete, pending = (pending + data).split(b"\n\n")
        for frame in complete:
            lines = frame.decode().split("\n")
            yield at, dict(line.split(": ", 1) for line in lines if ": " in line and not line.startswith(":"))


async def read_sse(response: httpx2.Response, trace: Trace) -> None:
    """Follow Brook's ``response`` to its terminal event, noting each text delta and when its bytes arrived."""
    if response.status_code != 200:
        body = await response.aread()
        raise BenchError(
            f"{response.request.method} {response.url.path} answered {response.status_code}: {body[:200]!r}"
        )
    async for at, fields in frames(response):
        if "id" not in fields:  # the retry: line
            continue
        trace.ids.append(int(fields["id"]))
        kind = fields["event"]
        if kind != "text.delta" and trace.message_id and kind not in TERMINAL:
            continue
        data = json.loads(fields["data"])
        if not trace.message_id:
            trace.message_id, trace.first_event = data["message_id"], at
        if kind == "text.delta":
            trace.deltas.append(data["delta"])
            trace.delta_times.append(at)
        if kind in TERMINAL:
            trace.terminal, trace.ended = kind, at
            trace.server_ttft_ms = data.get("time_to_first_token_ms")
            return
    raise BenchError("the stream closed before its terminal event")


async def post_stream(
    client: httpx2.AsyncClient, base: str, session: Session, content: str, limit: float = REPLY_TIMEOUT
) -> Trace:
    """POST a message with ``mode: stream`` and follow the reply in the response, for at most ``limit`` seconds
    (heartbeats keep a stream whose reply never runs open for ever)."""
    trace = Trace(sent=time.monotonic())
    path = f"{base}/api/v1/sessions/{session.id}/messages"
    body = {"content": content, "mode": "stream"}
    async with asyncio.timeout(limit), client.stream("POST", path, json=body, headers=bearer(session)) as response:
        await read_sse(response, trace)
    return trace


async def get_stream(client: httpx2.AsyncClient, base: str, session: Session, reply_id: str) -> Trace:
    trace = Trace(sent=time.monotonic())
    headers = bearer(session) | {"Accept": "text/event-stream"}
    url = f"{base}/api/v1/messages/{reply_id}/stream"
    async with asyncio.timeout(REPLY_TIMEOUT), client.stream("GET", url, headers=headers) as response:
        await read_sse(response, trace)
    return trace


async def direct(client: httpx2.AsyncClient, upstream: Upstream, content: str) -> Trace:
    """The model API read straight, with the same client as Brook's streams are read."""
    trace = Trace(sent=time.monotonic())
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": content}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    url, headers = f"{upstream.base_url}/chat/completions", {"Authorization": "Bearer bench-key"}
    async with asyncio.timeout(REPLY_TIMEOUT), client.stream("POST", url, json=body, headers=headers) as response:
        async for at, fields in frames(response):
            if fields.get("data", "[DONE]") == "[DONE]":
                break
            for choice in json.loads(fields["data"])["choices"]:
                if choice["delta"].get("content"):
                    trace.deltas.append(choice["delta"]["content"])
                    trace.delta_times.append(at)
    trace.ended = time.monotonic()
    return trace


def http_client() -> httpx2.AsyncClient:
    return httpx2.AsyncClient(timeout=120, limits=httpx2.Limits(max_connections=1000, max_keepalive_connections=200))


def sessions_for(port: int, count: int, tenant_key: str = LLM_KEY) -> list[Session]:
    return [new_session(port, tenant_key) for _ in range(count)]


def say(line: str) -> None:
    """A progress line, with the seconds since the start."""
    print(f"[{time.monotonic() - STARTED:4.0f} s] {line}", flush=True)


def ms(seconds: float) -> float:
    return seconds * 1000


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def worker_pid(stack: Stack, index: int) -> int:
    pid = stack.pid(f"worker-{index}")
    if pid is None:
        raise BenchError(f"worker-{index} is not running")
    return pid


# --- 1. Added time to first token -------------------------------------------------------------------------------------


async def ttft(stack: Stack, upstream: Upstream, sessions: list[Session], plan: Plan) -> dict[str, Any]:
    """Per concurrency: waves of ``c`` Brook replies through nginx and of ``c`` direct calls, alternating. A session
    whose reply failed is replaced: its reply may never end (with the sweeper off, nothing ends it)."""
    content = f"bench ttft_ms={UPSTREAM_TTFT_MS} tokens=5"
    out: dict[str, Any] = {}
    pids = [worker_pid(stack, index) for index in range(stack.config.workers)]
    async with http_client() as client:
        for concurrency in CONCURRENCY:
            brook_cpu = 0.0
            # Brook's, split: POST → its ``status: running`` event; the runner's own time to first token.
            samples: dict[str, list[float]] = {"brook": [], "direct": [], "status": [], "server": []}
            errors: list[str] = []
            for wave in range(max(1, plan.ttft_samples[concurrency] // concurrency)):
                for side in ("direct", "brook") if wave % 2 == 0 else ("brook", "direct"):
                    if side == "direct":
                        calls = [direct(client, upstream, content) for _ in range(concurrency)]
                    else:
                        calls = [
                            post_stream(client, stack.url, s, content, TTFT_TIMEOUT) for s in sessions[:concurrency]
                        ]
                    cpu_before = sum(cpu_seconds(pid) for pid in pids)
                    traces = await asyncio.gather(*calls, return_exceptions=True)
                    if side == "brook":
                        brook_cpu += sum(cpu_seconds(pid) for pid in pids) - cpu_before
                    for index, trace in enumerate(traces):
                        if isinstance(trace, BaseException):
                            errors.append(f"{side}: {type(trace).__name__}: {trace}")
                            if side == "brook":
                                sessions[index] = new_session(stack.config.port, LLM_KEY)
                        else:
                            samples[side].append(ms(trace.first_delta - trace.sent))
                            if side == "brook":
                                samples["status"].append(ms(trace.first_event - trace.sent))
                                samples["server"].append(float(trace.server_ttft_ms or math.nan))
            figures: dict[str, Any] = {
                "errors": len(errors),
                "first_error": errors[0][:300] if errors else "",
                # Both workers' CPU while the Brook waves ran, per reply (the POST, the run, the stream).
                "worker_cpu_ms_per_reply": ms(brook_cpu) / max(1, len(samples["brook"]) + len(errors)),
            }
            for side, values in samples.items():
                figures[side] = values
                for q in (50, 99):
                    figures[f"{side}_p{q}_ms"] = percentile(values, q / 100) if values else math.nan
            for q in (50, 99):
                figures[f"added_p{q}_ms"] = figures[f"brook_p{q}_ms"] - figures[f"direct_p{q}_ms"]
            out[str(concurrency)] = figures
    return out


# --- 2. Tokens per second through one worker ------------------------------------------------------------------------


async def relay(stack: Stack, sessions: Sequence[Session], streams: int, tokens: int) -> dict[str, Any]:
    """``streams`` replies of ``tokens`` one-token chunks at once, posted straight to worker 0."""
    base = f"http://127.0.0.1:{stack.worker_port(0)}"
    pid = worker_pid(stack, 0)
    expected = "".join(numbered(tokens))
    cpu_before = cpu_seconds(pid)
    async with http_client() as client:
        traces = await asyncio.gather(
            *(post_stream(client, base, session, f"bench tokens={tokens}") for session in sessions[:streams])
        )
    cpu = cpu_seconds(pid) - cpu_before
    first = min(trace.first_delta for trace in traces)
    last = max(trace.delta_times[-1] for trace in traces)
    total = tokens * streams
    return {
        "streams": streams,
        "tokens": total,
        "tokens_per_second": total / (last - first),
        "tokens_per_second_post_to_end": total / (max(t.ended for t in traces) - min(t.sent for t in traces)),
        "first_to_last_seconds": last - first,
        "text_deltas": sum(len(trace.deltas) for trace in traces),
        "worker_cpu_us_per_token": cpu / total * 1e6,
        "ok": all(trace.text == expected and trace.ids == list(range(1, len(trace.ids) + 1)) for trace in traces),
        "terminal": sorted({trace.terminal for trace in traces}),
    }


# --- 3. Idle streams ----------------------------------------------------------------------------------------------


async def open_idle(port: int, reply_id: str, token: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """An SSE connection straight to a worker, returned once ``: connected`` has arrived; the caller closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(stream_request(port, reply_id, token))
        received = b""
        while b": connected" not in received:
            if b"\r\n\r\n" in received and not received.startswith(b"HTTP/1.1 200"):
                raise BenchError(f"the stream answered {received[:300]!r}")
            data = await asyncio.wait_for(reader.read(65536), timeout=30)
            if not data:
                raise BenchError(f"the stream closed before ': connected': {received[:300]!r}")
            received += data
    except BaseException:
        writer.close()
        raise
    return reader, writer


async def idle_streams(stack: Stack, plan: Plan) -> dict[str, Any]:
    """Open quiet streams on worker 0 up to each of ``plan.idle_steps``; measure the worker at each step."""
    port, pid = stack.worker_port(0), worker_pid(stack, 0)
    sessions = sessions_for(port, math.ceil(max(plan.idle_steps) / plan.idle_per_session), IDLE_KEY)
    replies = [send(port, session, "Hello, are you there?") for session in sessions]
    held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    points: list[dict[str, Any]] = []
    failure = ""
    try:
        for _ in range(10):  # warm the stream path up (imports, pools, the channel layer's connection)
            (await open_idle(port, replies[0], sessions[0].token))[1].close()
        gate = asyncio.Semaphore(32)

        async def one(index: int) -> None:
            session = sessions[index // plan.idle_per_session]
            async with gate:
                held.append(await open_idle(port, replies[index // plan.idle_per_session], session.token))

        for step in plan.idle_steps:
            started = time.monotonic()
            results = await asyncio.gather(*(one(index) for index in range(len(held), step)), return_exceptions=True)
            opened_in = time.monotonic() - started
            errors = [result for result in results if isinstance(result, BaseException)]
            if errors:
                failure = f"{len(errors)} of {len(results)} opens failed on the way to {step}: {errors[0]}"[:400]
            await asyncio.sleep(plan.idle_settle)  # each stream subscribes to its reply's group after ': connected'
            cpu_before = cpu_seconds(pid)
            await asyncio.sleep(plan.idle_cpu_window)
            cpu = cpu_seconds(pid) - cpu_before
            points.append(
                {
                    "streams": len(held),
                    "target": step,
                    "open_seconds": opened_in,
                    "rss_mib": rss_kib(pid) / 1024,
                    "threads": threads(pid),
                    "pg_connections": pg_connections(DATABASE_URL),
                    "cpu_percent": cpu / plan.idle_cpu_window * 100,
                }
            )
            say(f"    {len(held):5d} streams: {json.dumps(points[-1])}")
            if failure:
                break
    finally:
        # Nothing else happens on this stack (the caller drops it): the worker is killed, not drained of its streams
        # and replies, which takes minutes once it is saturated.
        stack.stop_part("worker-0", signal.SIGKILL)
        for _, writer in held:
            writer.close()
    base = points[0]
    for point in points[1:]:
        point["kib_per_stream"] = (point["rss_mib"] - base["rss_mib"]) * 1024 / max(point["streams"], 1)
    return {"points": points, "held": points[-1]["streams"], "failure": failure, "sessions": len(sessions)}


# --- 4. Database transactions per answer --------------------------------------------------------------------------


def pg_stats() -> dict[str, int]:
    """The bench database's counters, read from the ``postgres`` database so the reading does not count."""
    columns = ("xact_commit", "tup_inserted", "tup_updated", "tup_deleted")
    with psycopg.connect(admin_url(DATABASE_URL), autocommit=True, connect_timeout=5) as conn:
        row = conn.execute(
            f"SELECT {', '.join(columns)} FROM pg_stat_database WHERE datname = %s",  # noqa: S608 - fixed names
            [DATABASE_NAME],
        ).fetchone()
    if row is None:
        raise BenchError(f"pg_stat_database has no {DATABASE_NAME}")
    return dict(zip(columns, (int(value) for value in row), strict=True))


async def answer(stack: Stack, session: Session, rate: float) -> dict[str, Any]:
    async with http_client() as client:
        trace = await post_stream(client, stack.url, session, f"bench tokens={ANSWER_TOKENS} rate={rate:g}")
    return {
        "message_id": trace.message_id,
        "text_ok": trace.text == "".join(numbered(ANSWER_TOKENS)),
        "sse_text_deltas": len(trace.deltas),
    }


def writes(stacks: dict[str, Stack], plan: Plan) -> tuple[dict[str, list[dict[str, Any]]], dict[str, float]]:
    """Each round, each server, paced then full speed: one answer through nginx with nothing else running, the
    database's counters read ``STATS_SETTLE`` after it (and before the next), less the idle baseline's rate."""
    sessions = {server: sessions_for(stack.config.port, 2 * plan.writes_rounds) for server, stack in stacks.items()}
    say(f"  idle baseline ({STATS_SETTLE + plan.baseline_seconds:.0f} s) ...")
    time.sleep(STATS_SETTLE)
    start = pg_stats()
    time.sleep(plan.baseline_seconds)
    before = pg_stats()
    baseline = {key: (before[key] - start[key]) / plan.baseline_seconds for key in before}
    out: dict[str, list[dict[str, Any]]] = {server: [] for server in stacks}
    for n in range(plan.writes_rounds):
        for server in order(n):
            figures: dict[str, Any] = {}
            for kind, rate in (("paced", plan.writes_rate), ("full", 0.0)):
                say(f"  round {n + 1}: {server}: one {ANSWER_TOKENS:,}-token answer, {kind} ...")
                started = time.monotonic()
                session = sessions[server].pop()
                answered = attempt("the answer", asyncio.run, answer(stacks[server], session, rate))
                answered_in = time.monotonic() - started
                time.sleep(STATS_SETTLE)
                after = pg_stats()
                window = time.monotonic() - started
                figures[kind] = {
                    "rate": rate,
                    "answer_seconds": answered_in,
                    "window_seconds": window,
                    **answered,
                    **{key: after[key] - before[key] for key in after},
                    "transactions": after["xact_commit"] - before["xact_commit"] - baseline["xact_commit"] * window,
                }
                before = after
            out[server].append(figures)
    for rounds in out.values():  # counted last: this process's own queries count in the database's figures
        for figures in rounds:
            for kind in ("paced", "full"):
                if "message_id" in figures[kind]:
                    figures[kind]["event_rows"] = Event.objects.filter(message_id=figures[kind]["message_id"]).count()
    django.db.connection.close()
    return out, baseline


# --- 5. Stop across workers ---------------------------------------------------------------------------------------


def stops(stack: Stack, upstream: Upstream, count: int) -> dict[str, Any]:
    """Replies started on worker 0, cancelled through worker 1: cancel sent → the model API sees its client go."""
    a, b = stack.worker_port(0), stack.worker_port(1)
    sessions = sessions_for(stack.config.port, count)
    samples: list[float] = []
    answers: list[float] = []
    failures: list[str] = []
    for session in sessions:
        tag = uuid.uuid4().hex
        reply_id = send(a, session, f"bench tokens=100000 rate=20 tag={tag}")
        deadline = time.monotonic() + 10
        while (call := upstream.call(tag)) is None or call.first_token_ns is None:
            if time.monotonic() > deadline:
                raise BenchError(f"the model API never sent reply {reply_id} a token")
            time.sleep(0.005)
        time.sleep(0.05)  # a few tokens in, as a visitor would press stop
        sent = time.monotonic()
        status, body = api(b, "POST", f"/api/v1/messages/{reply_id}/cancel", token=session.token)
        answers.append(ms(time.monotonic() - sent))
        if status != 202:
            failures.append(f"cancel answered {status}: {body}")
        deadline = time.monotonic() + 10
        while (call := upstream.call(tag)) is None or call.closed_ns is None:
            if time.monotonic() > deadline:
                failures.append(f"the model API still streams to reply {reply_id} 10 s after its cancel")
                break
            time.sleep(0.005)
        else:
            samples.append(ms(call.closed_ns / 1e9 - sent))
    return {
        "samples": samples,
        "p50_ms": percentile(samples, 0.5) if samples else math.nan,
        "p99_ms": percentile(samples, 0.99) if samples else math.nan,
        "cancel_response_p50_ms": percentile(answers, 0.5),
        "failures": failures,
    }


# --- 6. Fan-out across workers ------------------------------------------------------------------------------------

STAMP = re.compile(r" (\d+)@(\d+)")


def stamped(trace: Trace) -> dict[int, float]:
    """Token number → milliseconds from the model API writing it to this client reading it."""
    out: dict[int, float] = {}
    for delta, at in zip(trace.deltas, trace.delta_times, strict=True):
        for number, sent_ns in STAMP.findall(delta):
            out[int(number)] = ms(at - int(sent_ns) / 1e9)
    return out


async def fanout(stack: Stack, upstream: Upstream, session: Session, plan: Plan) -> dict[str, Any]:
    """One reply on worker 0, followed from worker 0 (A) and worker 1 (B), and the same answer read directly."""
    a, b = (f"http://127.0.0.1:{stack.worker_port(index)}" for index in (0, 1))
    content = f"bench ttft_ms=500 tokens={plan.fanout_tokens} rate={plan.fanout_rate:g} stamp=1"
    async with http_client() as client:
        response = await client.post(
            f"{a}/api/v1/sessions/{session.id}/messages",
            json={"content": content, "mode": "poll"},
            headers=bearer(session),
        )
        if response.status_code != 202:
            raise BenchError(f"POST messages answered {response.status_code}: {response.text[:200]}")
        reply_id = response.json()["id"]
        # The model API waits 500 ms before the first token: both readers are subscribed by then.
        on_a, on_b, straight = await asyncio.gather(
            get_stream(client, a, session, reply_id),
            get_stream(client, b, session, reply_id),
            direct(client, upstream, content),
        )
    lat_a, lat_b, lat_direct = stamped(on_a), stamped(on_b), stamped(straight)
    common = sorted(set(lat_a) & set(lat_b))
    if len(common) < plan.fanout_tokens:
        raise BenchError(f"the readers saw {len(lat_a)} and {len(lat_b)} of {plan.fanout_tokens} stamped tokens")
    out: dict[str, Any] = {"tokens": len(common), "events_a": len(on_a.deltas), "events_b": len(on_b.deltas)}
    series = {
        "a": list(lat_a.values()),
        "b": list(lat_b.values()),
        "direct": list(lat_direct.values()),
        "b_minus_a": [lat_b[n] - lat_a[n] for n in common],
    }
    for name, values in series.items():
        for q in (50, 99):
            out[f"{name}_p{q}_ms"] = percentile(values, q / 100)
    for q in (50, 99):  # the goal's figure: upstream write → reader on B, less what a direct reader takes
        out[f"b_minus_direct_p{q}_ms"] = out[f"b_p{q}_ms"] - out[f"direct_p{q}_ms"]
    return out


# --- Running it all -----------------------------------------------------------------------------------------------


def order(round_number: int) -> tuple[str, ...]:
    return SERVERS if round_number % 2 == 0 else SERVERS[::-1]


def raise_open_files() -> None:
    """Thousands of streams: as many descriptors as allowed, for this process and the stacks it starts."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def warm_up(stack: Stack, upstream: Upstream) -> None:
    """First requests import and connect: a few replies through each worker (nginx spreads them) and direct."""
    sessions = sessions_for(stack.config.port, 4)

    async def run() -> None:
        async with http_client() as client:
            await asyncio.gather(*(post_stream(client, stack.url, s, "bench tokens=50") for s in sessions))
            await direct(client, upstream, "bench tokens=50")
            await relay(stack, sessions, 1, 1000)

    asyncio.run(run())


@dataclass
class Results:
    rounds: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {s: [] for s in SERVERS})
    writes: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    writes_baseline: dict[str, float] = field(default_factory=dict)
    idle: dict[str, dict[str, Any]] = field(default_factory=dict)

    def median(self, server: str, *path: str) -> float:
        return median_of(self.rounds[server], path)


def median_of(rounds: Sequence[dict[str, Any]], path: Sequence[str]) -> float:
    """The median over rounds of the figure at ``path``; NaN where no round has it (a measurement failed)."""
    values = []
    for round_ in rounds:
        value: Any = round_
        try:
            for key in path:
                value = value[key]
        except (KeyError, TypeError):
            continue
        values.append(float(value))
    return statistics.median(values) if values else math.nan


def attempt(label: str, run: Callable[P, dict[str, Any]], *args: P.args, **kwargs: P.kwargs) -> dict[str, Any]:
    """``run(...)``'s figures, or ``{"error": ...}``: a measurement that fails (Brook answering 503, a reply that
    never ends) is reported as failed, and the others still run."""
    try:
        return run(*args, **kwargs)
    except (BenchError, httpx2.HTTPError, OSError, TimeoutError, psycopg.Error) as error:
        say(f"  {label} FAILED: {type(error).__name__}: {error}")
        return {"error": f"{type(error).__name__}: {error}"[:500]}


def measure(plan: Plan, results: Results) -> None:
    upstream = Upstream()
    try:
        env = {**WORKER_ENV, "BROOK_LLM_BASE_URL": upstream.base_url}
        with stacks_running(SERVERS, name="bench-relay", database_url=DATABASE_URL, workers=2, env=env) as stacks:
            for server, stack in stacks.items():
                say(f"starting {server} (nginx, 2 workers, Redis) ...")
                stack.start()
            ensure_tenant(
                LLM_KEY,
                name="bench relay (LLM agent)",
                agent=Agent.LLM,
                llm_provider="openai",
                llm_model=MODEL,
                llm_base_url=upstream.base_url,
                llm_tools_enabled=False,
                llm_max_tokens=200_000,
                max_stream_seconds=600,
                **TENANT_LIMITS,
            )
            ensure_tenant(
                IDLE_KEY,
                name="bench relay (quiet demo agent)",
                agent=Agent.DEMO,
                max_stream_seconds=3600,
                **TENANT_LIMITS,
            )
            django.db.connection.close()  # this process holds no connection while the workers are measured
            sessions = {server: sessions_for(stack.config.port, max(CONCURRENCY)) for server, stack in stacks.items()}
            for stack in stacks.values():
                warm_up(stack, upstream)

            for n in range(plan.rounds):
                for server in order(n):
                    stack, port, figures = stacks[server], stacks[server].config.port, {}
                    say(f"round {n + 1}: {server}: time to first token at {CONCURRENCY} ...")
                    figures["ttft"] = attempt("ttft", asyncio.run, ttft(stack, upstream, sessions[server], plan))
                    say(f"round {n + 1}: {server}: relay, {plan.relay_tokens:,} tokens ...")
                    figures["relay"] = {
                        str(k): attempt(
                            "relay", asyncio.run, relay(stack, sessions_for(port, k), k, plan.relay_tokens // k)
                        )
                        for k in plan.relay_streams
                    }
                    say(f"round {n + 1}: {server}: {plan.stops} stops across workers ...")
                    figures["stop"] = attempt("stops", stops, stack, upstream, plan.stops)
                    say(f"  PostgreSQL connections now: {pg_connections(DATABASE_URL)}")
                    results.rounds[server].append(figures)

            say("database transactions per answer (each read 11 s after the answer) ...")
            results.writes, results.writes_baseline = writes(stacks, plan)

            for server, stack in stacks.items():
                say(f"{server}: restarting worker 0 (where the replies run) with BROOK_DELTA_FLUSH_MS=0 ...")
                restart_workers(stack, {"BROOK_DELTA_FLUSH_MS": "0"}, [0])
                warm_up(stack, upstream)
            for n in range(plan.rounds):
                for server in order(n):
                    say(f"round {n + 1}: {server}: fan-out across workers ...")
                    session = new_session(stacks[server].config.port, LLM_KEY)
                    results.rounds[server][n]["fanout"] = attempt(
                        "fan-out", asyncio.run, fanout(stacks[server], upstream, session, plan)
                    )

            for server, stack in stacks.items():
                say(f"{server}: restarting worker 0; idle streams up to {max(plan.idle_steps):,} ...")
                restart_workers(stack, {}, [0])
                results.idle[server] = attempt("idle streams", asyncio.run, idle_streams(stack, plan))
                stack.stop()  # its load and connections must not count against the next server's
    finally:
        upstream.stop()


# --- Reporting ----------------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor() or platform.machine(),
    )
    memory_kib = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal:")
    )
    return {
        "node": platform.node(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gib": round(memory_kib / 1024**2, 1),
        "platform": platform.platform(),
        "load_average_at_start": os.getloadavg()[0],
    }


def versions() -> dict[str, str]:
    with psycopg.connect(admin_url(DATABASE_URL), autocommit=True, connect_timeout=5) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    redis = subprocess.run(["redis-server", "--version"], capture_output=True, text=True)  # noqa: S607
    return {
        "python": platform.python_version(),
        "django": django.get_version(),
        "daphne": daphne.__version__,
        "uvicorn": uvicorn.__version__,
        "nginx": nginx_version(),
        "postgresql": str(row[0]).split()[0] if row else "?",
        "redis": next((w.removeprefix("v=") for w in redis.stdout.split() if w.startswith("v=")), "?"),
    }


def verdict(value: float, goal: float, *, at_least: bool = False) -> str:
    if math.isnan(value):
        return "FAIL"
    return "pass" if (value >= goal if at_least else value <= goal) else "FAIL"


def table(results: Results, plan: Plan) -> tuple[list[list[str]], dict[str, dict[str, Any]]]:
    """Rows of (figure, goal, one cell per server), and the same figures by name."""
    rows: list[list[str]] = []
    figures: dict[str, dict[str, Any]] = {server: {} for server in SERVERS}

    def row(label: str, goal: str, key: str, values: dict[str, Any], cell: Callable[[Any], str] = str) -> None:
        for server in SERVERS:
            figures[server][key] = values[server]
        rows.append([label, goal, *(cell(values[server]) for server in SERVERS)])

    def check(fmt: str, goal: float, *, at_least: bool = False) -> Callable[[Any], str]:
        return lambda v: f"{v:{fmt}} {verdict(float(v), goal, at_least=at_least)}"

    def each(value: Callable[[str], Any]) -> dict[str, Any]:
        return {server: value(server) for server in SERVERS}

    def med(server: str, *path: str) -> float:
        return results.median(server, *path)

    def pair(server: str, *path: str) -> str:
        """p50 / p99 of ``path`` (whose last part is a prefix of ``_p50_ms`` and ``_p99_ms``)."""
        *head, name = path
        return f"{med(server, *head, f'{name}_p50_ms'):.2f} / {med(server, *head, f'{name}_p99_ms'):.2f}"

    for c in CONCURRENCY:
        key, streams = str(c), f"{c} stream{'s' * (c > 1)}"
        for q, goal in (("p50", GOALS["added_ttft_p50_ms"]), ("p99", GOALS["added_ttft_p99_ms"])):
            row(
                f"added time to first token, {streams}: {q} (ms)",
                f"≤ {goal:g} ms",
                f"added_ttft_{c}_{q}_ms",
                {s: med(s, "ttft", key, f"added_{q}_ms") for s in SERVERS},
                check(".2f", goal),
            )
        errors = {s: sum(r["ttft"].get(key, {}).get("errors", 0) for r in results.rounds[s]) for s in SERVERS}
        row(
            f"… Brook p50 / p99; direct p50 / p99; POST → `status` event p50; runner's own TTFT p50 (ms); "
            f"workers' CPU per reply (ms); failed requests, {streams}",
            "",
            f"ttft_{c}_detail",
            {
                s: f"{pair(s, 'ttft', key, 'brook')}; {pair(s, 'ttft', key, 'direct')}; "
                f"{med(s, 'ttft', key, 'status_p50_ms'):.1f}; {med(s, 'ttft', key, 'server_p50_ms'):.0f}; "
                f"{med(s, 'ttft', key, 'worker_cpu_ms_per_reply'):.1f}; {errors[s]}"
                for s in SERVERS
            },
        )
    for k in plan.relay_streams:
        key, streams = str(k), f"{k} stream{'s' * (k > 1)}"
        row(
            f"tokens/s relayed by one worker, {streams} of {plan.relay_tokens // k:,} tokens",
            f"≥ {GOALS['tokens_per_second']:,.0f}",
            f"tokens_per_second_{k}",
            {s: med(s, "relay", key, "tokens_per_second") for s in SERVERS},
            check(",.0f", GOALS["tokens_per_second"], at_least=True),
        )
        row(
            f"… tokens/s from POST to end; worker CPU per token; SSE text deltas, {streams}",
            "",
            f"relay_{k}_detail",
            {
                s: f"{med(s, 'relay', key, 'tokens_per_second_post_to_end'):,.0f}; "
                f"{med(s, 'relay', key, 'worker_cpu_us_per_token'):.0f} µs; "
                f"{med(s, 'relay', key, 'text_deltas'):.0f}"
                for s in SERVERS
            },
        )
    row(
        "relayed text whole and SSE ids 1..N (every round)",
        "",
        "relay_ok",
        each(lambda s: all(r["relay"][k].get("ok") for r in results.rounds[s] for k in r["relay"])),
        lambda ok: "ok" if ok else "BROKEN",
    )

    top = max(plan.idle_steps)
    idle = {s: results.idle[s] | {"points": results.idle[s].get("points", [])} for s in SERVERS}
    row(
        f"idle SSE streams held by one worker (of {top:,})",
        f"{GOALS['idle_streams']:,}",
        "idle_streams_held",
        each(lambda s: idle[s].get("held", 0)),
        lambda v: f"{v:,} {verdict(v, min(top, GOALS['idle_streams']), at_least=True)}",
    )
    row(
        "idle streams: KiB of worker RSS per stream, at the most held",
        f"≤ {GOALS['idle_kib_per_stream']:g}",
        "idle_kib_per_stream",
        each(lambda s: idle[s]["points"][-1].get("kib_per_stream", math.nan) if idle[s]["points"] else math.nan),
        check(".1f", GOALS["idle_kib_per_stream"]),
    )
    for label, key, fmt in (
        ("worker RSS (MiB)", "rss_mib", ".0f"),
        ("worker threads", "threads", "d"),
        ("PostgreSQL connections (bench database)", "pg_connections", "d"),
        ("worker CPU (%)", "cpu_percent", ".0f"),
        ("seconds to open each step's streams", "open_seconds", ".0f"),
    ):
        row(
            f"… {label} at {' / '.join(str(p) for p in plan.idle_steps)} streams",
            "",
            f"idle_{key}",
            {s: " / ".join(format(p[key], fmt) for p in idle[s]["points"]) for s in SERVERS},
        )
    row(
        "… where opening more streams failed",
        "",
        "idle_failure",
        each(lambda s: idle[s].get("failure") or idle[s].get("error") or "-"),
    )

    def written(server: str, *path: str) -> float:
        return median_of(results.writes[server], path)

    for kind, label in (("paced", f"{plan.writes_rate:g} tokens/s"), ("full", "full speed")):
        row(
            f"database transactions per {ANSWER_TOKENS:,}-token answer, {label}",
            f"≤ {GOALS['transactions_per_answer']:g}",
            f"transactions_{kind}",
            {s: written(s, kind, "transactions") for s in SERVERS},
            check(".0f", GOALS["transactions_per_answer"]),
        )
        row(
            f"… event rows stored; table rows inserted / updated; SSE text deltas, {label}",
            "",
            f"writes_{kind}_detail",
            {
                s: f"{written(s, kind, 'event_rows'):.0f}; {written(s, kind, 'tup_inserted'):.0f} / "
                f"{written(s, kind, 'tup_updated'):.0f}; {written(s, kind, 'sse_text_deltas'):.0f}"
                for s in SERVERS
            },
        )
    row(
        f"stop → model API connection closed, across workers: p99 (ms, of {plan.stops})",
        f"≤ {GOALS['stop_p99_ms']:g} ms",
        "stop_p99_ms",
        each(lambda s: med(s, "stop", "p99_ms")),
        check(".1f", GOALS["stop_p99_ms"]),
    )
    row(
        "… stop p50 (ms); cancel response p50 (ms); failures",
        "",
        "stop_detail",
        {
            s: f"{med(s, 'stop', 'p50_ms'):.1f}; {med(s, 'stop', 'cancel_response_p50_ms'):.1f}; "
            f"{sum(len(r['stop'].get('failures', [r['stop'].get('error')])) for r in results.rounds[s])}"
            for s in SERVERS
        },
    )
    row(
        "fan-out to the other worker through Redis: p99 (ms; reader on B less direct reader)",
        f"≤ {GOALS['fanout_p99_ms']:g} ms",
        "fanout_p99_ms",
        each(lambda s: med(s, "fanout", "b_minus_direct_p99_ms")),
        check(".2f", GOALS["fanout_p99_ms"]),
    )
    row(
        "… p50 of that; B - A p50 / p99; model API → A p50 / p99; direct p50 / p99 (ms)",
        "",
        "fanout_detail",
        {
            s: f"{med(s, 'fanout', 'b_minus_direct_p50_ms'):.2f}; "
            + "; ".join(pair(s, "fanout", name) for name in ("b_minus_a", "a", "direct"))
            for s in SERVERS
        },
    )
    return rows, figures


def markdown(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    header = ["figure", "goal", *SERVERS]
    widths = [max(w, len(h)) for w, h in zip(widths, header, strict=True)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"]
    lines.append("|" + "|".join("-" * (w + 2) if i < 2 else "-" * (w + 1) + ":" for i, w in enumerate(widths)) + "|")
    for r in rows:
        cells = [c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def failing(rows: Sequence[Sequence[str]]) -> list[str]:
    return [
        f"{r[0]}: {', '.join(f'{s} {c}' for s, c in zip(SERVERS, r[2:], strict=True))}"
        for r in rows
        if "FAIL" in "".join(r[2:])
    ]


def plots(results: Results, plan: Plan) -> list[Path]:
    IMAGES.mkdir(parents=True, exist_ok=True)
    colors = {"daphne": "tab:blue", "uvicorn": "tab:orange"}
    paths = []

    figure, axis = pyplot.subplots(figsize=(7, 4))
    plotted: list[float] = []
    for server in SERVERS:
        for q, style in (("p50", "-o"), ("p99", "--s")):
            values = [results.median(server, "ttft", str(c), f"added_{q}_ms") for c in CONCURRENCY]
            axis.plot(CONCURRENCY, values, style, color=colors[server], label=f"{server} {q}")
            plotted += values
    for q, goal in (("p50", GOALS["added_ttft_p50_ms"]), ("p99", GOALS["added_ttft_p99_ms"])):
        axis.axhline(goal, color="grey", linestyle=":", linewidth=1)
        axis.annotate(f"goal {q}", (CONCURRENCY[0], goal), fontsize=8, color="grey")
    axis.set(xscale="log", yscale="log" if all(v > 0 for v in plotted) else "symlog")
    axis.set(xlabel="concurrent streams", ylabel="added time to first token (ms)")
    axis.set_xticks(CONCURRENCY, [str(c) for c in CONCURRENCY])
    axis.set_title("Time to first token: through Brook minus direct")
    axis.legend(fontsize=8)
    paths.append(save(figure, "bench-relay-ttft.png"))

    figure, (rss, kib) = pyplot.subplots(1, 2, figsize=(10, 4))
    for server in SERVERS:
        points = results.idle[server].get("points", [])
        rss.plot(
            [p["streams"] for p in points], [p["rss_mib"] for p in points], "-o", color=colors[server], label=server
        )
        kib.plot(
            [p["streams"] for p in points[1:]],
            [p["kib_per_stream"] for p in points[1:]],
            "-o",
            color=colors[server],
            label=server,
        )
    kib.axhline(GOALS["idle_kib_per_stream"], color="grey", linestyle=":", linewidth=1, label="goal")
    rss.set(xlabel="idle SSE streams on one worker", ylabel="worker RSS (MiB)", title="Worker memory")
    kib.set(xlabel="idle SSE streams on one worker", ylabel="KiB per stream", title="Memory per idle stream")
    rss.legend(fontsize=8)
    kib.legend(fontsize=8)
    paths.append(save(figure, "bench-relay-idle.png"))

    figure, axis = pyplot.subplots(figsize=(7, 4))
    width = 0.8 / len(SERVERS)
    for i, server in enumerate(SERVERS):
        values = [results.median(server, "relay", str(k), "tokens_per_second") for k in plan.relay_streams]
        positions = [j + i * width for j in range(len(plan.relay_streams))]
        axis.bar(positions, values, width, color=colors[server], label=server)
    axis.axhline(GOALS["tokens_per_second"], color="grey", linestyle=":", linewidth=1, label="goal")
    axis.set_xticks(
        [j + width * (len(SERVERS) - 1) / 2 for j in range(len(plan.relay_streams))],
        [f"{k} stream{'s' * (k > 1)}" for k in plan.relay_streams],
    )
    axis.set(ylabel="tokens/s", title="Tokens relayed per second by one worker")
    axis.legend(fontsize=8)
    paths.append(save(figure, "bench-relay-throughput.png"))

    figure, (stop, fan) = pyplot.subplots(1, 2, figsize=(10, 4))
    for i, server in enumerate(SERVERS):
        for j, q in enumerate(("p50", "p99")):
            stop.bar(i + j * 0.4, results.median(server, "stop", f"{q}_ms"), 0.4, color=colors[server], alpha=1 - j / 2)
            fan.bar(
                i + j * 0.4,
                results.median(server, "fanout", f"b_minus_direct_{q}_ms"),
                0.4,
                color=colors[server],
                alpha=1 - j / 2,
            )
    ticks = [f"{s}\np50 | p99" for s in SERVERS]
    stop.axhline(GOALS["stop_p99_ms"], color="grey", linestyle=":", linewidth=1)
    fan.axhline(GOALS["fanout_p99_ms"], color="grey", linestyle=":", linewidth=1)
    stop.set_xticks([i + 0.2 for i in range(len(SERVERS))], ticks)
    fan.set_xticks([i + 0.2 for i in range(len(SERVERS))], ticks)
    stop.set(ylabel="ms", title="Stop → model API connection closed")
    fan.set(ylabel="ms", title="Token to a reader on the other worker")
    paths.append(save(figure, "bench-relay-latency.png"))
    return paths


def save(figure: Any, name: str) -> Path:
    path = IMAGES / name
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    pyplot.close(figure)
    return path


DOC_INTRO = f"""# Benchmarks

Scripts that print figures, not tests: each starts what it measures on this machine and prints a markdown table with
the machine and the date. Run them on a quiet machine; they need PostgreSQL at 127.0.0.1:5432 (user postgres),
`redis-server` and nginx (docs/operations.md).

- `make bench` (bench/relay.py): Brook as a relay between a model API and chat widgets, against the goals of issue
  8, Daphne and uvicorn side by side. About 15 minutes; `.venv/bin/python bench/relay.py --quick` takes about three
  (one round, smaller counts) and `--rounds N` changes the number of rounds. Its section below is generated: each
  run replaces it.
- `make bench-servers`: Daphne and uvicorn as the one worker behind nginx: requests, SSE, memory.
- `make bench-live`: the event log's throughput and writes in one process.
- `make bench-limits`: the cost of a rate check and of a stream slot.
- `make bench-widget`: the widget on a 10,000-token reply in Chromium.

{DOC_START}
{DOC_END}
"""


def write_doc(lines: Sequence[str]) -> None:
    text = DOC.read_text() if DOC.exists() else DOC_INTRO
    if DOC_START not in text or DOC_END not in text:
        text = text.rstrip() + f"\n\n{DOC_START}\n{DOC_END}\n"
    head, _, rest = text.partition(DOC_START)
    _, _, tail = rest.partition(DOC_END)
    DOC.write_text(head + DOC_START + "\n" + "\n".join(lines) + "\n" + DOC_END + tail)


def report(results: Results, plan: Plan, started: float, now: datetime, host: dict[str, Any]) -> None:
    rows, figures = table(results, plan)
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    found = versions()
    baseline = results.writes_baseline.get("xact_commit", 0.0)
    header = [
        f"## Relay benchmark (`make bench`{' --quick' if plan.quick else ''}) — {now:%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {host['cpu']}, {host['cores']} cores, {host['ram_gib']} GiB RAM ({host['platform']}); load "
        f"average at the start {host['load_average_at_start']:.2f}. Python {found['python']}, Django "
        f"{found['django']}, Daphne {found['daphne']}, uvicorn {found['uvicorn']}, nginx {found['nginx']}, "
        f"PostgreSQL {found['postgresql']}, Redis {found['redis']}.",
        "",
        f"Each stack: nginx, two workers of one server, a Redis of its own; one PostgreSQL database. Medians of "
        f"{plan.rounds} round{'s' * (plan.rounds > 1)}, servers alternating (idle streams: once per server, on a "
        f"restarted worker 0). Whole run: {time.monotonic() - started:.0f} s.",
    ]
    notes = [
        f"- Time to first token: the model API waits {UPSTREAM_TTFT_MS} ms, then streams 5 tokens. Through Brook: "
        "POST `mode: stream` through nginx (two workers, least_conn), timed from sending the POST to the first "
        "`text.delta` (session creation not included; each stream has its own session). Direct: the same "
        "client (httpx2, the HTTP client under the `openai` SDK; its SSE read by hand, no SDK) POSTing to the model "
        "API. Added = Brook minus direct, per percentile. Per concurrency and round: "
        + ", ".join(f"{n} samples at {c}" for c, n in plan.ttft_samples.items())
        + " on each path, in alternating waves of that many.",
        "- Relay: POSTed straight to worker 0 (`mode: stream`), the model API writing one token per chunk as fast "
        "as the socket takes them; tokens/s from the first to the last token at the client, all streams together. "
        "Deltas are coalesced as shipped (BROOK_DELTA_FLUSH_MS=300), so the SSE events are few.",
        f"- Idle streams: opened straight to worker 0's port ({plan.idle_per_session} per session, 32 opens at a "
        "time), on demo-agent replies that sit in their first step (BROOK_DEMO_STEP_SECONDS=3600) and were started "
        "on the same worker; KiB per stream = RSS growth over the RSS before the first stream, divided by the "
        f"streams. Measured {plan.idle_settle:g} s after the last open; CPU over the next {plan.idle_cpu_window:g} s "
        f"(every idle stream re-reads the database every BROOK_STREAM_RECHECK_SECONDS). Open files: {soft:,}.",
        f"- Database: `pg_stat_database.xact_commit` of the bench database (every committed transaction, reads "
        f"included: autocommit SELECTs count) from before the answer to {STATS_SETTLE:g} s after it (PostgreSQL "
        f"publishes a backend's counts up to 10 s late), less the idle baseline ({baseline:.2f}/s over "
        f"{plan.baseline_seconds:g} s) over the same time. One answer through nginx with its SSE reader; the "
        "sweeper is off (BROOK_SWEEP_SECONDS=0) in every worker, the runner's lease renewals count. "
        f"{plan.writes_rounds} answer{'s' * (plan.writes_rounds > 1)} per server and rate (counts, not timings).",
        "- Stop: a reply (20 tokens/s) POSTed straight to worker A; 50 ms after its first token, its cancel POSTed "
        "straight to worker B; until the model API reads end of file on the reply's connection.",
        "- Fan-out: worker A restarted with BROOK_DELTA_FLUSH_MS=0 (one event per token). A reply started on worker "
        f"A, {plan.fanout_tokens} tokens at {plan.fanout_rate:g}/s, each stamped by the model API with CLOCK_MONOTONIC "
        "when written; SSE readers straight on A and B and a direct reader, all in this process. Goal figure: "
        "model API → reader on B, less model API → direct reader, per percentile.",
        "- Everything shares this machine: the bench clients, the model API, nginx, the workers, Redis and PostgreSQL.",
    ]
    lines = [*header, "", *markdown(rows), "", *notes]
    bad = failing(rows)
    lines += ["", "Goals missed: " + ("none." if not bad else ""), *(f"- {line}" for line in bad)]
    paths = plots(results, plan)
    lines += ["", *(f"![{path.stem}](img/{path.name})" for path in paths)]
    print("\n" + "\n".join(lines[: len(lines) - len(paths) - 1]))

    JSON_OUT.parent.mkdir(exist_ok=True)
    JSON_OUT.write_text(
        json.dumps(
            {
                "date": now.isoformat(timespec="seconds"),
                "machine": host,
                "versions": found,
                "plan": asdict(plan),
                "goals": GOALS,
                "worker_env": WORKER_ENV,
                "figures": figures,
                "goals_missed": bad,
                "rounds": results.rounds,
                "writes": results.writes,
                "writes_baseline_per_second": results.writes_baseline,
                "idle": results.idle,
                "notes": notes,
            },
            indent=2,
        )
        + "\n"
    )
    write_doc(lines)
    print(f"\nfigures: {JSON_OUT.relative_to(ROOT)}; plots: {', '.join(str(p.relative_to(ROOT)) for p in paths)}")
    print(f"section of {DOC.relative_to(ROOT)} rewritten")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a fast smoke run: one round, smaller counts")
    parser.add_argument("--rounds", type=int, help="rounds of the repeated measurements (default 3; --quick 1)")
    parser.add_argument("--writes-rate", type=float, help="tokens/s of the paced answer whose writes are counted")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else DEFAULT
    if args.rounds is not None:
        plan = replace(plan, rounds=max(1, args.rounds))
    if args.writes_rate is not None:
        plan = replace(plan, writes_rate=args.writes_rate)
    started = time.monotonic()
    now = datetime.now(UTC)
    host = machine()
    say(f"# Brook relay benchmark — {now:%Y-%m-%d %H:%M} UTC; {host['cpu']}, {host['cores']} cores")
    raise_open_files()
    results = Results()
    measure(plan, results)
    report(results, plan, started, now, host)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("interrupted (the stacks were stopped)", file=sys.stderr)
        sys.exit(130)

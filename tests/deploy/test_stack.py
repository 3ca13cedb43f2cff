"""The production stack (deploy/stack.py) as `make run-prod` starts it: nginx in front of two workers, Daphne (A) and
uvicorn (B), on the test database and a Redis of the stack's own, which these tests restart.

Worker ports are addressed directly where a test must pin a request to one worker ("started on A, streamed from B");
everything a visitor does otherwise goes through nginx.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.db import connection
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect
from websockets.typing import Origin

from chat.models import Message, MessageStatus
from core.errors import ErrorCode
from deploy.stack import ROOT, Stack, StackConfig, _alive, config_from_env, free_ports
from tenants.services import tenant_update
from tests.conftest import database_url, request
from tests.streaming.conftest import SseEvent, assert_whole_log, open_stream, parse_sse, read_frames

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.stack]

A, B = 0, 1
TERMINAL = {"message.completed", "message.cancelled", "message.failed"}
WORKER_ENV = {
    # Replies paced like a model (a few seconds each), and a short lease so a killed worker's reply ends quickly.
    "BROOK_DEMO_TOKENS_PER_SECOND": "40",
    "BROOK_DEMO_STEP_SECONDS": "0.2",
    "BROOK_LEASE_SECONDS": "4",
    "BROOK_SWEEP_SECONDS": "1",
}


@pytest.fixture(scope="module")
def stack(django_db_setup: None, django_db_blocker: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if connection.vendor != "postgresql":
        pytest.skip("the production stack runs on PostgreSQL: runs in CI's PostgreSQL + Redis pass")
    nginx, worker_a, worker_b, redis_port = free_ports(4)
    running = Stack(
        StackConfig(
            state_dir=tmp_path_factory.mktemp("stack"),
            database_url=database_url(),
            workers=2,
            servers=("daphne", "uvicorn"),
            port=nginx,
            worker_ports=(worker_a, worker_b),
            redis_port=redis_port,
            env=WORKER_ENV,
        )
    )
    running.start()
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def fresh_counters(stack: Stack) -> None:
    """Every request comes from 127.0.0.1: start each test with the stack's rate counters empty."""
    redis.Redis.from_url(stack.redis_url).flushdb()


def new_session(port: int, tenant: Any, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(
        "POST",
        "/api/v1/sessions",
        body=json.dumps({"tenant": tenant.public_key}),
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    response = conn.getresponse()
    body = json.loads(response.read())
    conn.close()
    return response.status, body


def send(port: int, session: dict[str, Any], content: str = "Tell me a long story about rivers") -> str:
    status, accepted = request(
        port,
        "POST",
        f"/api/v1/sessions/{session['id']}/messages",
        {"content": content, "mode": "poll"},
        session["token"],
    )
    assert status == 202, accepted
    return str(accepted["id"])


def read_to_end(port: int, message_id: str, token: str, after: list[SseEvent]) -> list[SseEvent]:
    """Follow the reply's SSE stream from where ``after`` ends to its terminal event, reconnecting with
    Last-Event-ID whenever the connection drops, as EventSource does."""
    events = list(after)
    for _ in range(20):
        last = events[-1].id if events else None
        events += parse_sse(read_frames(open_stream(port, message_id, token, last_event_id=last)))
        if events and events[-1].event in TERMINAL:
            return events
    raise AssertionError("the stream never reached its terminal event")


class SseReader:
    """One SSE connection, read a frame at a time and kept open between reads."""

    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.response = response
        self.pending = b""
        self.events: list[SseEvent] = []
        self.arrived: list[float] = []

    def read_until(self, event_type: str | None = None) -> list[SseEvent]:
        """Read until an event of ``event_type`` (default: the terminal event); what has arrived so far."""
        while not any(e.event == event_type or (event_type is None and e.event in TERMINAL) for e in self.events):
            chunk = self.response.read1(65536)
            assert chunk, "the stream closed before that event"
            complete, _, self.pending = (self.pending + chunk).rpartition(b"\n\n")
            new = parse_sse(complete + b"\n\n") if complete else []
            self.events += new
            self.arrived += [time.monotonic()] * len(new)
        return self.events


class SocketReader(threading.Thread):
    """A WebSocket on one session, read in the background until a reply's terminal event."""

    def __init__(self, port: int, session: dict[str, Any]) -> None:
        super().__init__(daemon=True)
        url = f"ws://127.0.0.1:{port}/ws/v1/sessions/{session['id']}/?token={session['stream_token']['token']}"
        self.socket = connect(url, open_timeout=10)
        self.frames: list[dict[str, Any]] = []
        self.start()

    def run(self) -> None:
        with self.socket:
            for raw in self.socket:
                frame = json.loads(raw)
                self.frames.append(frame)
                if frame.get("event") in TERMINAL:
                    break

    def events(self, timeout: float = 30.0) -> list[dict[str, Any]]:
        self.join(timeout)
        return [frame for frame in self.frames if frame["type"] == "event"]


def assert_socket_log_whole(events: list[dict[str, Any]], reply: Message) -> None:
    assert_whole_log([e["seq"] for e in events], [e["event"] for e in events])
    assert "".join(e["data"]["delta"] for e in events if e["event"] == "text.delta") == reply.content


def ended(message_id: str, timeout: float = 30.0) -> Message:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reply = Message.objects.get(id=message_id)
        if reply.status not in {MessageStatus.QUEUED, MessageStatus.RUNNING}:
            return reply
        time.sleep(0.1)
    raise AssertionError(f"reply {message_id} did not end within {timeout:.0f} s")


def text(events: list[SseEvent]) -> str:
    return "".join(e.data["delta"] for e in events if e.event == "text.delta")


def test_nginx_serves_static_files_and_brook_answers_with_production_settings(stack: Stack) -> None:
    port = stack.config.port
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/static/brook/widget.js")
    static = conn.getresponse()
    body = static.read()
    conn.request("GET", "/no/such/page")
    missing = conn.getresponse()
    missing_body = missing.read().decode()
    conn.request("GET", "/readyz")
    ready = conn.getresponse()
    ready_body = json.loads(ready.read())
    conn.close()

    assert static.status == 200
    assert body == (ROOT / "static" / "brook" / "widget.js").read_bytes()
    assert static.getheader("Cache-Control") == "public, max-age=3600"
    assert static.getheader("Server") == "nginx"  # no version, and no worker's name
    assert missing.status == 404
    assert "DEBUG = True" not in missing_body
    assert missing.getheader("X-Frame-Options") == "DENY"
    assert missing.getheader("X-Content-Type-Options") == "nosniff"
    assert ready.status == 200
    assert ready_body["checks"] == {"database": "ok", "cache": "ok", "channel_layer": "ok"}
    for worker in ("worker-0", "worker-1"):
        lines = (stack.state / "logs" / f"{worker}.log").read_text().splitlines()
        assert lines
        assert all("level" in json.loads(line) for line in lines), f"{worker} wrote a line that is not JSON"


def test_sse_through_nginx_reaches_the_visitor_as_it_is_written(stack: Stack, tenant: Any) -> None:
    port = stack.config.port
    status, session = new_session(port, tenant)
    assert status == 201
    message_id = send(port, session)

    started = time.monotonic()
    response = open_stream(port, message_id, session["token"])
    first = response.read1(65536)
    connected_after = time.monotonic() - started
    reader = SseReader(response)
    reader.pending = first
    events = reader.read_until()
    first_delta = next(at for at, event in zip(reader.arrived, events, strict=True) if event.event == "text.delta")

    assert response.status == 200
    assert first.startswith(b": connected")
    assert connected_after < 1.0
    assert reader.arrived[-1] - first_delta > 0.5  # text arrived while the reply was still being written
    assert_whole_log([e.id for e in events], [e.event for e in events])
    assert text(events) == Message.objects.get(id=message_id).content


def test_a_websocket_through_nginx_sends_a_message_and_gets_its_reply(stack: Stack, tenant: Any) -> None:
    port = stack.config.port
    _, session = new_session(port, tenant)
    url = f"ws://127.0.0.1:{port}/ws/v1/sessions/{session['id']}/?token={session['stream_token']['token']}"

    with connect(url, open_timeout=10, origin=Origin(f"http://127.0.0.1:{port}")) as socket_:
        socket_.send(json.dumps({"type": "message", "content": "Hello through nginx"}))
        frames = []
        for raw in socket_:
            frames.append(json.loads(raw))
            if frames[-1].get("event") in TERMINAL:
                break

    accepted = frames[0]
    events = [frame for frame in frames if frame["type"] == "event"]
    assert accepted["type"] == "message.accepted"
    reply = Message.objects.get(id=accepted["message_id"])
    assert reply.status == MessageStatus.COMPLETED
    assert_socket_log_whole(events, reply)


def test_started_on_a_streamed_from_b_cancelled_through_a_and_resumed_on_b(stack: Stack, tenant: Any) -> None:
    worker_a, worker_b = stack.worker_port(A), stack.worker_port(B)
    _, session = new_session(worker_a, tenant)
    message_id = send(worker_a, session)

    seen = parse_sse(read_frames(open_stream(worker_b, message_id, session["token"]), stop_at="text.delta"))
    status, _ = request(worker_a, "POST", f"/api/v1/messages/{message_id}/cancel", token=session["token"])
    events = read_to_end(worker_b, message_id, session["token"], seen)

    assert status in {200, 202}
    assert_whole_log([e.id for e in events], [e.event for e in events])
    assert events[-1].event == "message.cancelled"
    reply = Message.objects.get(id=message_id)
    assert reply.status == MessageStatus.CANCELLED
    assert reply.content and text(events) == reply.content


def test_a_websocket_on_a_receives_the_events_of_a_reply_running_on_b(stack: Stack, tenant: Any) -> None:
    _, session = new_session(stack.worker_port(A), tenant)
    socket_ = SocketReader(stack.worker_port(A), session)

    message_id = send(stack.worker_port(B), session)
    events = socket_.events()

    reply = ended(message_id)
    assert reply.status == MessageStatus.COMPLETED
    assert {e["message_id"] for e in events} == {message_id}
    assert_socket_log_whole(events, reply)


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics of one worker (or of nginx's pick), as {(sample name, sorted labels): value}."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/metrics")
    response = conn.getresponse()
    body = response.read().decode()
    conn.close()
    assert response.status == 200, body
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(
        value for (sample, have), value in samples.items() if sample == name and set(labels.items()) <= set(have)
    )


def test_metrics_add_up_every_worker_whichever_answers(stack: Stack, tenant: Any) -> None:
    ports = [stack.config.port, stack.worker_port(A), stack.worker_port(B)]
    ended_name, streams = "brook_replies_ended_total", "brook_active_streams"
    before = [total(scrape(port), ended_name, tenant=tenant.slug, outcome="completed") for port in ports]
    sessions = [new_session(stack.worker_port(worker), tenant)[1] for worker in (A, B)]

    replies = [send(stack.worker_port(worker), sessions[worker], "Hi") for worker in (A, B)]  # one runs on each
    for reply_id in replies:
        assert ended(reply_id).status == MessageStatus.COMPLETED
    # A stream open on A is an active stream in every worker's answer.
    running = send(stack.worker_port(A), sessions[A])
    reader = SseReader(open_stream(stack.worker_port(A), running, sessions[A]["token"]))
    reader.read_until("text.delta")
    open_counts = [total(scrape(port), streams, tenant=tenant.slug, transport="sse") for port in ports]
    reader.read_until()
    reader.response.close()
    after = [total(scrape(port), ended_name, tenant=tenant.slug, outcome="completed") for port in ports]

    assert [later - earlier for earlier, later in zip(before, after, strict=True)] == [3, 3, 3]
    assert open_counts == [1, 1, 1]
    deadline = time.monotonic() + 5
    while total(scrape(stack.worker_port(B)), streams, tenant=tenant.slug) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert total(scrape(stack.worker_port(B)), streams, tenant=tenant.slug) == 0


def test_per_ip_limits_hold_through_nginx_whichever_worker_answers(stack: Stack, tenant: Any) -> None:
    tenant_update(tenant=tenant, sessions_per_ip_per_minute=4)
    port = stack.config.port
    access_log = stack.state / "logs" / "nginx-access.log"
    log_start = access_log.stat().st_size

    answers = [new_session(port, tenant) for _ in range(4)]
    # A visitor cannot claim another address: nginx appends the one it saw, and Brook trusts only that hop.
    spoofed = new_session(port, tenant, {"X-Forwarded-For": "203.0.113.9"})
    served_by = {
        line.split("upstream=")[1].split()[0]
        for line in access_log.read_text()[log_start:].splitlines()
        if "POST /api/v1/sessions" in line and " 201 " in line
    }

    assert [status for status, _ in answers] == [201] * 4
    assert spoofed[0] == 429 and spoofed[1]["code"] == "RATE_LIMITED"
    assert served_by == {f"127.0.0.1:{stack.worker_port(A)}", f"127.0.0.1:{stack.worker_port(B)}"}


def test_a_redis_restart_mid_stream_loses_and_repeats_nothing(stack: Stack, tenant: Any) -> None:
    worker_a, worker_b = stack.worker_port(A), stack.worker_port(B)
    _, session = new_session(worker_a, tenant)
    socket_ = SocketReader(worker_a, session)
    message_id = send(worker_b, session)
    stream = SseReader(open_stream(worker_a, message_id, session["token"]))
    stream.read_until("text.delta")

    stack.restart_redis()
    events = stream.read_until()  # the same connection: worker A rode out the restart
    socket_events = socket_.events()

    reply = ended(message_id)
    assert reply.status == MessageStatus.COMPLETED
    assert_whole_log([e.id for e in events], [e.event for e in events])
    assert text(events) == reply.content
    assert_socket_log_whole(socket_events, reply)


def test_kill_9_of_the_worker_running_a_reply(stack: Stack, tenant: Any) -> None:
    worker_a, worker_b = stack.worker_port(A), stack.worker_port(B)
    _, session = new_session(worker_a, tenant)
    socket_ = SocketReader(worker_a, session)
    message_id = send(worker_b, session)
    seen = parse_sse(read_frames(open_stream(worker_a, message_id, session["token"]), stop_at="text.delta"))
    pid = stack.pid(f"worker-{B}")
    assert pid is not None

    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    events = read_to_end(worker_a, message_id, session["token"], seen)
    noticed_after = time.monotonic() - killed_at
    socket_events = socket_.events()
    stack.start_worker(B, wait=True)

    reply = Message.objects.get(id=message_id)
    assert noticed_after < 30
    assert reply.status == MessageStatus.INTERRUPTED
    assert reply.content and text(events) == reply.content
    assert events[-1].event == "message.failed" and events[-1].data["code"] == ErrorCode.RUN_INTERRUPTED
    assert_whole_log([e.id for e in events], [e.event for e in events])
    assert_socket_log_whole(socket_events, reply)
    assert request(worker_b, "GET", "/readyz")[0] == 200


def test_make_run_prod_and_stop_prod(stack: Stack, tmp_path: Path) -> None:
    """The commands `make run-prod` and `make stop-prod` run, on a stack of their own with one uvicorn worker."""
    nginx, _, redis_port = free_ports(3)
    environment = {
        **os.environ,
        "BROOK_PROD_DIR": str(tmp_path),
        "BROOK_PROD_PORT": str(nginx),
        "BROOK_PROD_REDIS_PORT": str(redis_port),
        "BROOK_PROD_WORKERS": "1",
        "BROOK_PROD_SERVER": "uvicorn",
        "DATABASE_URL": database_url(),
    }
    environment.pop("REDIS_URL", None)
    config = config_from_env(environment)
    assert config.port_of(0) == nginx + 21  # where the worker will listen; make sure it is free
    if not port_is_free(config.port_of(0)):
        pytest.skip(f"port {config.port_of(0)} is taken on this machine")

    started = subprocess.run(
        [sys.executable, "-m", "deploy.stack", "start"], cwd=ROOT, env=environment, capture_output=True, text=True
    )
    status, _ = request(nginx, "GET", "/readyz") if started.returncode == 0 else (None, None)
    pids = [int(path.read_text()) for path in (tmp_path / "pids").glob("*.pid")]
    stopped = subprocess.run(
        [sys.executable, "-m", "deploy.stack", "stop"], cwd=ROOT, env=environment, capture_output=True, text=True
    )

    assert started.returncode == 0, started.stderr
    assert f"Brook is up at http://127.0.0.1:{nginx}/" in started.stdout
    assert status == 200
    assert len(pids) == 3  # nginx, one worker, redis
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.strip() == "Stopped: nginx, worker-0, redis"
    assert not any(Path(f"/proc/{pid}").exists() and _alive(pid) for pid in pids)
    assert port_is_free(nginx) and port_is_free(config.port_of(0)) and port_is_free(redis_port)


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0

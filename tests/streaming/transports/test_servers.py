"""Real Daphne servers on free ports: SSE as a browser gets it, and fan-out between two worker processes."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

from chat.models import Message, MessageStatus
from tenants.services import tenant_update
from tests.conftest import Server, request
from tests.streaming.conftest import assert_whole_log, open_stream, parse_sse, read_frames, start_reply

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.stack]


def test_sse_through_daphne_sends_headers_at_once_and_resumes_after_a_drop(server: Server, tenant: Any) -> None:
    port = server(BROOK_DEMO_TOKENS_PER_SECOND="100", BROOK_DEMO_STEP_SECONDS="1.5")
    message_id, token = start_reply(port, tenant.public_key)

    started = time.monotonic()
    response = open_stream(port, message_id, token)
    first = response.read1(65536)
    assert time.monotonic() - started < 1.0  # long before the first token (the first step alone takes 1.5 s)
    assert response.status == 200
    assert response.getheader("Content-Type") == "text/event-stream"
    assert response.getheader("Cache-Control") == "no-cache"
    assert response.getheader("X-Accel-Buffering") == "no"
    assert response.getheader("Content-Encoding") is None
    assert first.startswith(b": connected")
    part = parse_sse(read_frames(response, stop_after=12))
    rest = parse_sse(read_frames(open_stream(port, message_id, token, last_event_id=part[-1].id)))

    events = part + rest
    assert_whole_log([e.id for e in events], [e.event for e in events])
    reply = Message.objects.get(id=message_id)
    assert reply.status == MessageStatus.COMPLETED
    assert "".join(e.data["delta"] for e in events if e.event == "text.delta") == reply.content


@pytest.fixture
def redis_layer() -> None:
    if not settings.REDIS_URL:
        pytest.skip("two workers share live events only through Redis: runs in CI's PostgreSQL + Redis pass")


def test_a_reply_running_on_one_worker_streams_and_cancels_from_another(
    server: Server, tenant: Any, redis_layer: None
) -> None:
    worker_a = server(BROOK_DEMO_TOKENS_PER_SECOND="30")
    worker_b = server()
    message_id, token = start_reply(worker_a, tenant.public_key, "Tell me a long story about rivers")

    stream = open_stream(worker_b, message_id, token)
    seen = parse_sse(read_frames(stream, stop_at="text.delta"))
    assert any(e.event == "text.delta" for e in seen)
    status, _cancelled = request(worker_b, "POST", f"/api/v1/messages/{message_id}/cancel", token=token)
    rest = parse_sse(read_frames(open_stream(worker_b, message_id, token, last_event_id=seen[-1].id)))

    assert status in {200, 202}
    events = seen + rest
    assert_whole_log([e.id for e in events], [e.event for e in events])
    assert events[-1].event == "message.cancelled"
    reply = Message.objects.get(id=message_id)
    assert reply.status == MessageStatus.CANCELLED
    assert "".join(e.data["delta"] for e in events if e.event == "text.delta") == reply.content


def ended(message_id: str) -> Message:
    """The reply once it is no longer running (10 s at most)."""
    for _ in range(200):
        reply = Message.objects.get(id=message_id)
        if reply.status != MessageStatus.RUNNING:
            return reply
        time.sleep(0.05)
    raise AssertionError("the reply is still running")


def test_a_dropped_stream_does_not_stop_the_reply(server: Server, tenant: Any) -> None:
    port = server(BROOK_DEMO_TOKENS_PER_SECOND="100")
    message_id, token = start_reply(port, tenant.public_key)

    read_frames(open_stream(port, message_id, token), stop_at="text.delta")

    assert ended(message_id).status == MessageStatus.COMPLETED


def test_with_cancel_on_disconnect_the_last_viewer_leaving_cancels(server: Server, tenant: Any) -> None:
    type(tenant).objects.filter(pk=tenant.pk).update(cancel_on_disconnect=True)
    port = server(BROOK_DEMO_TOKENS_PER_SECOND="30")
    message_id, token = start_reply(port, tenant.public_key)

    read_frames(open_stream(port, message_id, token), stop_at="text.delta")

    reply = ended(message_id)
    assert reply.status == MessageStatus.CANCELLED
    assert reply.content


def test_limits_hold_across_two_workers(server: Server, tenant: Any, redis_layer: None) -> None:
    tenant_update(tenant=tenant, messages_per_minute=2, sessions_per_ip_per_minute=3, max_streams_per_session=1)
    worker_a = server(BROOK_DEMO_TOKENS_PER_SECOND="20")
    worker_b = server()
    sessions = [
        request(port, "POST", "/api/v1/sessions", {"tenant": tenant.public_key}) for port in (worker_a, worker_b)
    ]
    third_session = request(worker_a, "POST", "/api/v1/sessions", {"tenant": tenant.public_key})
    fourth_session = request(worker_b, "POST", "/api/v1/sessions", {"tenant": tenant.public_key})
    created = sessions[0][1]
    url = f"/api/v1/sessions/{created['id']}/messages"

    first = request(worker_a, "POST", url, {"content": "One", "mode": "poll"}, created["token"])
    stream = open_stream(worker_a, first[1]["id"], created["token"])  # held open on A while the reply runs
    second_stream = open_stream(worker_b, first[1]["id"], created["token"])
    second_stream_body = json.loads(second_stream.read())
    stream.close()
    Message.objects.filter(id=first[1]["id"]).update(status=MessageStatus.CANCELLED)  # free the session at once
    second = request(worker_b, "POST", url, {"content": "Two", "mode": "poll"}, created["token"])
    Message.objects.filter(id=second[1]["id"]).update(status=MessageStatus.CANCELLED)
    third = request(worker_a, "POST", url, {"content": "Three", "mode": "poll"}, created["token"])

    assert [status for status, _ in sessions] + [third_session[0]] == [201, 201, 201]
    assert fourth_session[0] == 429 and fourth_session[1]["code"] == "RATE_LIMITED"
    assert (first[0], second[0]) == (202, 202)
    assert third[0] == 429 and third[1]["code"] == "RATE_LIMITED"
    assert not Message.objects.filter(content="Three").exists()
    assert (second_stream.status, second_stream_body["code"]) == (429, "TOO_MANY_STREAMS")
    assert second_stream.getheader("Retry-After") == "5"


def test_an_admin_change_reaches_every_worker_for_the_next_session(server: Server, tenant: Any) -> None:
    worker_a, worker_b = server(), server()
    before = request(worker_a, "POST", "/api/v1/sessions", {"tenant": tenant.public_key, "visitor_id": "v-1"})

    tenant_update(tenant=tenant, streaming_percentage=0)
    after = request(worker_b, "POST", "/api/v1/sessions", {"tenant": tenant.public_key, "visitor_id": "v-1"})
    again = request(worker_a, "POST", "/api/v1/sessions", {"tenant": tenant.public_key, "visitor_id": "v-1"})

    assert before[1]["delivery"] == "stream"
    assert after[1]["delivery"] == again[1]["delivery"] == "poll"


def server_process(port: int) -> Path:
    """/proc/<pid> of the Daphne process listening on ``port`` (found by its command line)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"daphne" in b" ".join(argv) and str(port).encode() in argv:
            return proc
    raise AssertionError(f"no Daphne process on port {port}")


def threads_of_server_on(port: int) -> int:
    return len(list((server_process(port) / "task").iterdir()))


def database_connections_of_server_on(port: int) -> int:
    """Connections the Daphne process on ``port`` holds to the test database: the database file open (SQLite), or TCP
    connections to the database server's port (PostgreSQL)."""
    process = server_process(port)
    opened = []
    for fd in (process / "fd").iterdir():
        with contextlib.suppress(OSError):  # closed meanwhile
            opened.append(os.readlink(fd))
    if connection.vendor == "sqlite":
        return opened.count(os.path.realpath(connection.settings_dict["NAME"]))
    sockets = {name.removeprefix("socket:[").removesuffix("]") for name in opened if name.startswith("socket:[")}
    remote_port = f":{int(connection.settings_dict['PORT'] or 5432):04X}"
    count = 0
    for table in ("tcp", "tcp6"):  # sl, local address, remote address, state (01: established), ..., inode
        for line in (process / "net" / table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[2].endswith(remote_port) and fields[3] == "01" and fields[9] in sockets:
                count += 1
    return count


def test_open_streams_hold_no_thread_or_database_connection_each(server: Server, tenant: Any) -> None:
    tenant_update(tenant=tenant, max_streams_per_session=40)
    # The reply sits in its first step, so its streams only wait; two database threads bound what the shared reads add.
    port = server(BROOK_DEMO_STEP_SECONDS="60", BROOK_DB_THREADS="2")
    message_id, token = start_reply(port, tenant.public_key)
    first = open_stream(port, message_id, token)
    first.read1(65536)
    threads_before, connections_before = threads_of_server_on(port), database_connections_of_server_on(port)

    streams = [open_stream(port, message_id, token) for _ in range(30)]
    for stream in streams:
        assert stream.read1(65536).startswith(b": connected")

    # Django would run each request's sync work in a thread of its own, with its own connection, for the stream's
    # whole life; the stream lets that thread go once it only waits (core/db_bridge.py, release_request_thread), and
    # its reads share the database threads. Each stream lets go soon after its first bytes: wait for that, 10 s at most.
    deadline = time.monotonic() + 10
    while True:
        threads = threads_of_server_on(port) - threads_before
        connections = database_connections_of_server_on(port) - connections_before
        if (threads < 5 and connections < 5) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert threads < 5, f"{threads} more threads for 30 more streams"
    assert connections < 5, f"{connections} more database connections for 30 more streams"
    for stream in [first, *streams]:
        stream.close()


def test_more_concurrent_replies_than_pooled_connections(server: Server, tenant: Any) -> None:
    """A sync view that waits on async work gives its pooled connection back first (core.db_bridge.wait_released):
    otherwise a pool's worth of waiting views would hold every connection the replies they wait for need."""
    if connection.vendor != "postgresql":
        pytest.skip("the connection pool is PostgreSQL's: runs in CI's PostgreSQL + Redis pass")
    tenant_update(tenant=tenant, sessions_per_ip_per_minute=100)
    port = server(DATABASE_POOL_MAX_SIZE="2", DATABASE_POOL_TIMEOUT="5", BROOK_DEMO_STEP_SECONDS="0.3")
    sessions = [request(port, "POST", "/api/v1/sessions", {"tenant": tenant.public_key})[1] for _ in range(6)]
    answers: list[tuple[int, Any]] = []

    def ask(session: dict[str, Any]) -> None:
        path = f"/api/v1/sessions/{session['id']}/messages"
        answers.append(request(port, "POST", path, {"content": "Hello?", "mode": "batch"}, session["token"]))

    askers = [threading.Thread(target=ask, args=(session,)) for session in sessions]
    started = time.monotonic()
    for asker in askers:
        asker.start()
    for asker in askers:
        asker.join(30)

    assert [status for status, _ in answers] == [200] * 6, answers
    assert all(body["status"] == "completed" for _, body in answers)
    assert time.monotonic() - started < 5  # no call waited out the pool's timeout

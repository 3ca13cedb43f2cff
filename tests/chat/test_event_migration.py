"""Moving ``Event`` from the streaming app to chat (migrations chat 0004, streaming 0002) keeps its table and its rows:
logs written before the move read back the same through the history, polling, SSE, WebSocket and the ORM, and the
``streaming.event`` content type, with the permissions on it, becomes ``chat.event``.

Each test migrates the database back to the heads before the move, fills it through the historical models as the old
code did, migrates forward, and reads as a client would. The fixture migrates forward again however the test ends.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.state import StateApps
from django.test import AsyncClient, Client
from django.utils import timezone
from pytest_django import Settings

from chat.models import Event
from chat.tokens import TokenKind, session_token_issue
from config.asgi import application
from tests.streaming.conftest import parse_sse, read_body

pytestmark = [pytest.mark.django_db(transaction=True)]

# The heads before the move; every other app stays at its latest migration.
BEFORE_THE_MOVE = {"chat": "0003_message_started_index", "streaming": "0001_initial"}
ORIGIN = "https://shop.example.com"
ANSWER = "Every event is stored “first”, then sent."

# (seq, type, data, ts): one event as it was stored, ``ts`` as clients get its created_at.
Logged = tuple[int, str, dict[str, Any], str]


@dataclass(frozen=True)
class OldLogs:
    """What the database held before the move: a streamed session with a finished reply and a running one."""

    tenant_id: int
    session_id: uuid.UUID
    reply_id: uuid.UUID
    reply_log: list[Logged]
    running_id: uuid.UUID
    running_log: list[Logged]
    running_content: str  # its snapshot plus the deltas logged after it
    content_type_id: int
    permission_id: int
    staff_username: str

    def token(self, kind: TokenKind = TokenKind.SESSION) -> str:
        return session_token_issue(tenant_id=self.tenant_id, session_id=self.session_id, kind=kind)[0]

    @property
    def headers(self) -> dict[str, str]:
        """What the widget on the tenant's site sends with every API request."""
        return {"Authorization": f"Bearer {self.token()}", "Origin": ORIGIN}


def _log(event_model: Any, message: Any, items: list[tuple[str, dict[str, Any]]], start: datetime) -> list[Logged]:
    rows = [
        event_model(message=message, seq=seq, type=kind, data=data, created_at=start + timedelta(milliseconds=seq))
        for seq, (kind, data) in enumerate(items, start=1)
    ]
    event_model.objects.bulk_create(rows)
    return [(row.seq, row.type, row.data, row.created_at.isoformat()) for row in rows]


def _started(reply: Any, question: Any) -> tuple[str, dict[str, Any]]:
    data = {
        "message_id": str(reply.pk),
        "session_id": str(reply.session_id),
        "reply_to": str(question.pk),
        "status": "queued",
        "delivery": "stream",
    }
    return "message.started", data


def write_old_logs(apps: StateApps) -> OldLogs:
    """Fill the database as the code before the move did, with the models of that time (``streaming.Event``)."""
    tenant_model = apps.get_model("tenants", "Tenant")
    session_model = apps.get_model("chat", "ChatSession")
    message_model = apps.get_model("chat", "Message")
    step_model = apps.get_model("chat", "ThoughtStep")
    event_model = apps.get_model("streaming", "Event")
    content_type_model = apps.get_model("contenttypes", "ContentType")
    permission_model = apps.get_model("auth", "Permission")
    user_model = apps.get_model("auth", "User")
    membership_model = apps.get_model("tenants", "TenantMembership")
    start = timezone.now() - timedelta(minutes=5)

    tenant = tenant_model.objects.create(
        name="Acme Shop", slug="acme-shop", allowed_origins=[ORIGIN], streaming_enabled=True, streaming_percentage=100
    )
    session = session_model.objects.create(tenant=tenant, visitor_id="visitor-1", rollout_bucket=42, delivery="stream")

    question = message_model.objects.create(
        session=session, role="user", content="How do streams survive a deploy?", status="completed", created_at=start
    )
    reply = message_model.objects.create(
        session=session,
        role="assistant",
        reply_to=question,
        status="completed",
        delivery="stream",
        content=ANSWER,
        model="brook-demo-1",
        prompt_tokens=6,
        completion_tokens=9,
        time_to_first_token_ms=420,
        duration_ms=900,
        snapshot_seq=7,
        created_at=start + timedelta(microseconds=1),
        started_at=start + timedelta(milliseconds=1),
        finished_at=start + timedelta(milliseconds=900),
    )
    step_model.objects.create(
        message=reply, index=0, kind="thinking", title="Analyzing the prompt", status="completed", started_at=start
    )
    reply_log = _log(
        event_model,
        reply,
        [
            _started(reply, question),
            ("status", {"status": "running"}),
            (
                "step.started",
                {
                    "index": 0,
                    "kind": "thinking",
                    "title": "Analyzing the prompt",
                    "detail": "",
                    "metadata": {},
                    "started_at": start.isoformat(),
                },
            ),
            ("step.completed", {"index": 0, "status": "completed", "duration_ms": 401, "detail": "Read 6 words."}),
            ("text.delta", {"delta": "Every event is stored “first”,"}),
            ("text.delta", {"delta": " then sent."}),
            (
                "message.completed",
                {
                    "content": ANSWER,
                    "reasoning": "",
                    "usage": {
                        "model": "brook-demo-1",
                        "prompt_tokens": 6,
                        "completion_tokens": 9,
                        "reasoning_tokens": None,
                    },
                    "time_to_first_token_ms": 420,
                    "duration_ms": 900,
                },
            ),
        ],
        start,
    )

    # A reply still running when the code was deployed: its row holds the snapshot up to seq 7, the log has more.
    later = start + timedelta(minutes=1)
    second = message_model.objects.create(
        session=session, role="user", content="And a long answer?", status="completed", created_at=later
    )
    running = message_model.objects.create(
        session=session,
        role="assistant",
        reply_to=second,
        status="running",
        delivery="stream",
        content="Let me check. ",
        snapshot_seq=7,
        created_at=later + timedelta(microseconds=1),
        started_at=later + timedelta(milliseconds=1),
        lease_expires_at=timezone.now() + timedelta(hours=1),
    )
    step_model.objects.create(
        message=running, index=0, kind="tool_call", title="text_statistics", status="completed", started_at=later
    )
    call = {"call_id": "call_1", "name": "text_statistics", "arguments": {"text": "And a long answer?"}}
    result = {"words": 4, "characters": 18}
    running_log = _log(
        event_model,
        running,
        [
            _started(running, second),
            ("status", {"status": "running"}),
            ("text.delta", {"delta": "Let me check. "}),
            (
                "step.started",
                {
                    "index": 0,
                    "kind": "tool_call",
                    "title": "text_statistics",
                    "detail": "",
                    "metadata": call,
                    "started_at": later.isoformat(),
                },
            ),
            ("tool.call", {**call, "step": 0}),
            ("tool.result", {"call_id": "call_1", "result": result, "is_error": False, "step": 0}),
            (
                "step.completed",
                {
                    "index": 0,
                    "status": "completed",
                    "duration_ms": 12,
                    "metadata": {"result": result, "is_error": False},
                },
            ),
            ("text.delta", {"delta": "Streams keep flowing."}),
        ],
        later,
    )

    # Staff of the tenant who were allowed to read the log in the admin.
    event_type, _ = content_type_model.objects.get_or_create(app_label="streaming", model="event")
    can_view, _ = permission_model.objects.get_or_create(
        content_type=event_type, codename="view_event", defaults={"name": "Can view event"}
    )
    staff = user_model.objects.create(username="support-acme", is_staff=True)
    staff.user_permissions.add(can_view)
    membership_model.objects.create(user=staff, tenant=tenant)

    return OldLogs(
        tenant_id=tenant.pk,
        session_id=session.pk,
        reply_id=reply.pk,
        reply_log=reply_log,
        running_id=running.pk,
        running_log=running_log,
        running_content="Let me check. Streams keep flowing.",
        content_type_id=event_type.pk,
        permission_id=can_view.pk,
        staff_username=staff.username,
    )


def migrate_to_latest() -> StateApps:
    """Apply every migration not applied yet; the models as the latest migrations describe them."""
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    executor.migrate(latest)
    executor.loader.build_graph()
    ContentType.objects.clear_cache()
    return executor.loader.project_state(latest).apps


@pytest.fixture
def old_logs(transactional_db: None) -> Iterator[OldLogs]:
    """The database as it was before the move, with logs in it; at the latest migrations again afterwards."""
    executor = MigrationExecutor(connection)
    before = [(app, BEFORE_THE_MOVE.get(app, name)) for app, name in executor.loader.graph.leaf_nodes()]
    try:
        executor.migrate(before)  # unapplies streaming 0002 too: it depends on chat 0004
        executor.loader.build_graph()
        applied = executor.loader.applied_migrations
        assert ("chat", "0003_message_started_index") in applied and ("chat", "0004_event_moves_to_chat") not in applied
        assert ("streaming", "0002_event_moves_to_chat") not in applied
        yield write_old_logs(executor.loader.project_state(before).apps)
    finally:
        migrate_to_latest()


def frames_of(body: bytes) -> list[Logged]:
    """An SSE body's events as stored: the frame's data without the ``message_id`` and ``ts`` every frame adds."""
    return [
        (
            frame.id,
            frame.event,
            {k: v for k, v in frame.data.items() if k not in {"message_id", "ts"}},
            frame.data["ts"],
        )
        for frame in parse_sse(body)
    ]


def without_message_id(log: list[Logged]) -> list[Logged]:
    return [(seq, kind, {k: v for k, v in data.items() if k != "message_id"}, ts) for seq, kind, data, ts in log]


async def test_the_session_history_shows_replies_written_before_the_move(old_logs: OldLogs) -> None:
    await sync_to_async(migrate_to_latest)()

    response = await AsyncClient().get(f"/api/v1/sessions/{old_logs.session_id}", headers=old_logs.headers)

    assert response.status_code == 200, response.content
    messages = {message["id"]: message for message in response.json()["messages"]}
    finished, running = messages[str(old_logs.reply_id)], messages[str(old_logs.running_id)]
    assert (finished["status"], finished["content"]) == ("completed", ANSWER)
    assert [step["title"] for step in finished["steps"]] == ["Analyzing the prompt"]
    assert (running["status"], running["content"]) == ("running", old_logs.running_content)


async def test_polling_returns_an_old_log_as_it_was_stored(old_logs: OldLogs) -> None:
    await sync_to_async(migrate_to_latest)()
    client = AsyncClient()

    finished = await client.get(f"/api/v1/messages/{old_logs.reply_id}", {"after": "0"}, headers=old_logs.headers)
    running = await client.get(f"/api/v1/messages/{old_logs.running_id}", {"after": "0"}, headers=old_logs.headers)

    assert finished.status_code == running.status_code == 200
    body = finished.json()
    assert [(e["seq"], e["type"], e["data"], e["ts"]) for e in body["events"]] == old_logs.reply_log
    assert (body["content"], body["next"], body["done"]) == (ANSWER, 7, True)
    body = running.json()
    assert [(e["seq"], e["type"], e["data"], e["ts"]) for e in body["events"]] == old_logs.running_log
    assert (body["content"], body["next"], body["done"]) == (old_logs.running_content, 8, False)


async def test_sse_resumes_an_old_log_after_last_event_id(old_logs: OldLogs) -> None:
    await sync_to_async(migrate_to_latest)()

    # EventSource reconnecting: the stream token in the URL, the last id it got in Last-Event-ID.
    response = await AsyncClient().get(
        f"/api/v1/messages/{old_logs.reply_id}/stream",
        {"token": old_logs.token(TokenKind.STREAM)},
        headers={"Last-Event-ID": "2", "Origin": ORIGIN},
    )

    assert response.status_code == 200 and response["Content-Type"] == "text/event-stream"
    body = await read_body(response, limit_seconds=10)
    assert frames_of(body) == without_message_id(old_logs.reply_log[2:])
    assert {frame.data["message_id"] for frame in parse_sse(body)} == {str(old_logs.reply_id)}


async def test_a_websocket_resume_replays_an_old_log(old_logs: OldLogs, settings: Settings) -> None:
    settings.BROOK_SWEEP_SECONDS = 0  # the sweeper is not under test; it would outlive the test's event loop
    await sync_to_async(migrate_to_latest)()
    socket = WebsocketCommunicator(
        application,
        f"/ws/v1/sessions/{old_logs.session_id}/?token={old_logs.token(TokenKind.STREAM)}",
        headers=[(b"origin", ORIGIN.encode()), (b"host", b"brook.example.com")],
    )
    connected, _ = await socket.connect()
    assert connected

    await socket.send_json_to({"type": "resume", "message_id": str(old_logs.reply_id), "after": 0})
    frames: list[dict[str, Any]] = []
    while not frames or frames[-1]["event"] != "message.completed":
        frame = await socket.receive_json_from(timeout=5)
        assert frame["type"] == "event", frame
        frames.append(frame)
    await socket.disconnect()

    assert {frame["message_id"] for frame in frames} == {str(old_logs.reply_id)}
    assert [(f["seq"], f["event"], f["data"], f["ts"]) for f in frames] == old_logs.reply_log


def rows_of(event_model: Any, message_id: uuid.UUID) -> list[Logged]:
    rows = event_model.objects.filter(message_id=message_id).order_by("seq")
    return [(row.seq, row.type, row.data, row.created_at.isoformat()) for row in rows]


def test_the_rows_stay_in_their_table_and_the_content_type_follows_the_model(old_logs: OldLogs) -> None:
    latest = migrate_to_latest()

    # chat.Event as the code has it, and as the migrations describe it to every later migration of the model.
    migrated_event = latest.get_model("chat", "Event")
    for event_model in (Event, migrated_event):
        assert rows_of(event_model, old_logs.reply_id) == old_logs.reply_log
        assert rows_of(event_model, old_logs.running_id) == old_logs.running_log
    assert Event._meta.db_table == migrated_event._meta.db_table == "streaming_event"
    with pytest.raises(LookupError):
        latest.get_model("streaming", "Event")

    # The content type row itself moved, so the permission on it (and staff holding it) follow the model.
    content_type = ContentType.objects.get(pk=old_logs.content_type_id)
    staff = User.objects.get(username=old_logs.staff_username)
    assert (content_type.app_label, content_type.model) == ("chat", "event")
    assert ContentType.objects.get_for_model(Event) == content_type
    assert not ContentType.objects.filter(app_label="streaming", model="event").exists()
    assert content_type.permission_set.filter(pk=old_logs.permission_id, codename="view_event").exists()
    assert staff.has_perm("chat.view_event")

    admin = Client()
    admin.force_login(staff)
    page = admin.get("/admin/chat/event/")

    assert page.status_code == 200
    listed = {(event.message_id, event.seq) for event in page.context["cl"].result_list}
    assert listed == {(old_logs.reply_id, seq) for seq, *_ in old_logs.reply_log} | {
        (old_logs.running_id, seq) for seq, *_ in old_logs.running_log
    }

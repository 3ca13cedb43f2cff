"""Helpers for live-delivery tests: read SSE bodies, poll logs to the end, check a log is whole, talk to servers."""

from __future__ import annotations

import asyncio
import http.client
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from django.test import AsyncClient

from chat.models import Event, Message
from tests.conftest import SessionInfo, request


@dataclass(frozen=True)
class SseEvent:
    id: int
    event: str
    data: dict[str, Any]


def parse_sse(raw: bytes) -> list[SseEvent]:
    """Frames of a Server-Sent Events body (comments skipped)."""
    events = []
    for block in raw.decode().split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            name, _, value = line.partition(": ")
            fields[name] = value
        if "id" in fields:
            events.append(SseEvent(int(fields["id"]), fields["event"], json.loads(fields["data"])))
    return events


async def read_body(response: Any, *, limit_seconds: float = 20) -> bytes:
    """All of a streaming response's body (it ends after the terminal event)."""
    chunks = []

    async def collect() -> None:
        async for chunk in response.streaming_content:
            chunks.append(bytes(chunk))

    await asyncio.wait_for(collect(), timeout=limit_seconds)
    return b"".join(chunks)


async def stream_chunks(response: Any) -> AsyncIterator[bytes]:
    async for chunk in response.streaming_content:
        yield bytes(chunk)


async def poll_to_end(
    client: AsyncClient, message_id: str, token: str, *, after: int = 0, wait: float = 2
) -> list[dict[str, Any]]:
    """Poll with the returned cursor until ``done``; every event seen, in order."""
    seen: list[dict[str, Any]] = []
    for _ in range(500):
        response = await client.get(
            f"/api/v1/messages/{message_id}",
            {"after": str(after), "wait": str(wait)},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200, response.content
        body = response.json()
        seen.extend(body["events"])
        after = body["next"]
        if body["done"]:
            return seen
    raise AssertionError("the reply never finished")


def stored_log(message_id: Any) -> list[tuple[int, str, dict[str, Any]]]:
    return list(Event.objects.filter(message_id=message_id).order_by("seq").values_list("seq", "type", "data"))


def assert_whole_log(seqs: list[int], types: list[str]) -> None:
    """1, 2, 3, … with no gap or repeat, and exactly one terminal event, last."""
    assert seqs == list(range(1, len(seqs) + 1))
    terminal = [t for t in types if t in {"message.completed", "message.cancelled", "message.failed"}]
    assert len(terminal) == 1 and types[-1] == terminal[0]


def text_of(events: list[dict[str, Any]]) -> str:
    return "".join(e["data"]["delta"] for e in events if e["type"] == "text.delta")


def message(message_id: Any) -> Message:
    return Message.objects.get(id=message_id)


def start_reply(port: int, tenant_key: str, content: str = "Explain streaming, please?") -> tuple[str, str]:
    """A new session and a message on the server on ``port``: the reply's id and the session token."""
    status, created = request(port, "POST", "/api/v1/sessions", {"tenant": tenant_key})
    assert status == 201
    status, accepted = request(
        port,
        "POST",
        f"/api/v1/sessions/{created['id']}/messages",
        {"content": content, "mode": "poll"},
        created["token"],
    )
    assert status == 202, accepted
    return accepted["id"], created["token"]


def open_stream(port: int, message_id: str, token: str, last_event_id: int | None = None) -> http.client.HTTPResponse:
    """GET a reply's SSE stream from the server on ``port`` (a worker, or nginx in front of them)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    headers = {"Accept": "text/event-stream", "Authorization": f"Bearer {token}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    conn.request("GET", f"/api/v1/messages/{message_id}/stream", headers=headers)
    return conn.getresponse()


def read_frames(
    response: http.client.HTTPResponse, *, stop_after: int | None = None, stop_at: str | None = None
) -> bytes:
    """Read SSE bytes until the stream ends, or until ``stop_after`` events (or an event of type ``stop_at``) have
    arrived; then drop the connection, as a flaky network would."""
    raw = b""
    while True:
        chunk = response.read1(65536)
        if not chunk:
            return raw
        raw += chunk
        whole = raw.rsplit(b"\n\n", 1)[0] + b"\n\n"
        events = parse_sse(whole)
        if (stop_after is not None and len(events) >= stop_after) or any(e.event == stop_at for e in events):
            response.close()
            return whole


async def start_poll(
    client: AsyncClient, session: SessionInfo, content: str = "How do I rotate my API keys safely?", **extra: Any
) -> str:
    response = await client.post(
        session.messages_url,
        {"content": content, "mode": "poll", **extra},
        content_type="application/json",
        headers={"Authorization": f"Bearer {session.token}"},
    )
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] in {"queued", "running"}
    assert body["urls"]["poll"].endswith(f"/api/v1/messages/{body['id']}")
    return str(body["id"])

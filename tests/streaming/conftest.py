"""Helpers for live-delivery tests: read SSE bodies, poll logs to the end, check a log is whole."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from django.test import AsyncClient

from chat.models import Message
from streaming.models import Event


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

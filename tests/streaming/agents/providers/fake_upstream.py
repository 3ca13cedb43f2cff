"""A local model API for tests: a real HTTP server that replays scripted responses in a provider's wire format.

Each request takes the next script: an error status with a JSON body, or a ``text/event-stream`` of ``data:`` lines
written one by one (with optional pauses), ended by closing the connection. It records every request and notices
when a client hangs up mid-stream.
"""

from __future__ import annotations

import json
import struct
import threading
import time
import zlib
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Script:
    status: int = 200
    # Each event: a dict (sent as JSON), a raw string, or (event name, dict) for APIs that name their events.
    events: list[Any] = field(default_factory=list)
    error: dict[str, Any] | None = None
    # Bedrock: (event type, payload) or (exception type, payload, "exception"), sent as AWS binary event-stream.
    aws_events: list[tuple[Any, ...]] | None = None
    error_type: str = ""  # x-amzn-ErrorType of an error response
    delay_first: float = 0.0
    delay_each: float = 0.0
    done_marker: bool = True


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class FakeUpstream:
    def __init__(self) -> None:
        self.scripts: deque[Script] = deque()
        self.requests: list[Seen] = []
        self.disconnected = threading.Event()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # AWS event streams are chunked, as the real service sends them

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                upstream.requests.append(Seen(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                script = upstream.scripts.popleft() if upstream.scripts else Script(status=500)
                if script.status != 200:
                    payload = json.dumps(script.error or {"error": {"message": "scripted failure"}}).encode()
                    self.send_response(script.status)
                    self.send_header("Content-Type", "application/json")
                    if script.error_type:
                        self.send_header("x-amzn-ErrorType", script.error_type)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                self.send_response(200)
                binary = script.aws_events is not None
                self.send_header(
                    "Content-Type", "application/vnd.amazon.eventstream" if binary else "text/event-stream"
                )
                self.send_header("Connection", "close")
                if binary:
                    self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    time.sleep(script.delay_first)
                    for aws_event in script.aws_events or []:
                        message = aws_message(*aws_event)
                        self.wfile.write(f"{len(message):x}\r\n".encode() + message + b"\r\n")
                        self.wfile.flush()
                        time.sleep(script.delay_each)
                    if binary:
                        self.wfile.write(b"0\r\n\r\n")
                        self.wfile.flush()
                        return
                    for event in script.events:
                        name = ""
                        if isinstance(event, tuple):
                            name, event = event
                        line = event if isinstance(event, str) else json.dumps(event)
                        frame = (f"event: {name}\n" if name else "") + f"data: {line}\n\n"
                        self.wfile.write(frame.encode())
                        self.wfile.flush()
                        time.sleep(script.delay_each)
                    if script.done_marker:
                        self.wfile.write(b"data: [DONE]\n\n")
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    upstream.disconnected.set()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    def add(self, **script: Any) -> None:
        self.scripts.append(Script(**script))

    def start(self) -> FakeUpstream:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _aws_header(name: str, value: str) -> bytes:
    encoded_name, encoded_value = name.encode(), value.encode()
    return (
        struct.pack(">B", len(encoded_name))
        + encoded_name
        + struct.pack(">BH", 7, len(encoded_value))  # 7: string
        + encoded_value
    )


def aws_message(kind: str, payload: dict[str, Any], message_type: str = "event") -> bytes:
    """One message of AWS's binary event-stream encoding (prelude, headers, payload, CRC32s)."""
    headers = (
        _aws_header(":message-type", message_type)
        + _aws_header(":exception-type" if message_type == "exception" else ":event-type", kind)
        + _aws_header(":content-type", "application/json")
    )
    body = json.dumps(payload).encode()
    total = 12 + len(headers) + len(body) + 4
    prelude = struct.pack(">II", total, len(headers))
    prelude += struct.pack(">I", zlib.crc32(prelude))
    message = prelude + headers + body
    return message + struct.pack(">I", zlib.crc32(message))


def bedrock_stream(
    *blocks: tuple[str, Any], input_tokens: int = 10, output_tokens: int = 5, stop: str = "end_turn"
) -> list[tuple[str, dict[str, Any]]]:
    """A ConverseStream event stream. Blocks: ("text", [pieces]), ("reasoning", ([pieces], signature)),
    ("tool_use", (id, name, [json pieces]))."""
    events: list[tuple[str, dict[str, Any]]] = [("messageStart", {"role": "assistant"})]
    for index, (kind, body) in enumerate(blocks):
        if kind == "tool_use":
            call_id, name, pieces = body
            events.append(
                (
                    "contentBlockStart",
                    {"contentBlockIndex": index, "start": {"toolUse": {"toolUseId": call_id, "name": name}}},
                )
            )
            deltas = [{"toolUse": {"input": piece}} for piece in pieces]
        elif kind == "reasoning":
            pieces, signature = body
            deltas = [{"reasoningContent": {"text": piece}} for piece in pieces]
            deltas.append({"reasoningContent": {"signature": signature}})
        else:
            deltas = [{"text": piece} for piece in body]
        events += [("contentBlockDelta", {"contentBlockIndex": index, "delta": delta}) for delta in deltas]
        events.append(("contentBlockStop", {"contentBlockIndex": index}))
    events.append(("messageStop", {"stopReason": stop}))
    events.append(
        (
            "metadata",
            {
                "usage": {
                    "inputTokens": input_tokens,
                    "outputTokens": output_tokens,
                    "totalTokens": input_tokens + output_tokens,
                },
                "metrics": {"latencyMs": 10},
            },
        )
    )
    return events


def openai_chunk(
    *,
    content: str | None = None,
    reasoning_content: str | None = None,
    reasoning: str | None = None,
    tool_calls: list[dict[str, Any]] | None = None,
    finish: str | None = None,
) -> dict[str, Any]:
    """One chat.completion.chunk as OpenAI-compatible servers send it."""
    delta: dict[str, Any] = {}
    if content is not None:
        delta["content"] = content
    if reasoning_content is not None:
        delta["reasoning_content"] = reasoning_content
    if reasoning is not None:
        delta["reasoning"] = reasoning
    if tool_calls is not None:
        delta["tool_calls"] = tool_calls
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "test-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def openai_usage(prompt: int, completion: int, reasoning: int = 0) -> dict[str, Any]:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "test-model",
        "choices": [],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "completion_tokens_details": {"reasoning_tokens": reasoning},
        },
    }


def anthropic_stream(
    *blocks: tuple[str, Any], input_tokens: int = 10, output_tokens: int = 5, stop: str = "end_turn"
) -> list[tuple[str, dict[str, Any]]]:
    """A Messages API event stream. Blocks: ("text", [pieces]), ("thinking", ([pieces], signature)),
    ("tool_use", (id, name, [json pieces]))."""
    events: list[tuple[str, dict[str, Any]]] = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_test",
                    "type": "message",
                    "role": "assistant",
                    "model": "claude-test",
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": input_tokens, "output_tokens": 1},
                },
            },
        ),
        ("ping", {"type": "ping"}),
    ]
    for index, (kind, body) in enumerate(blocks):
        if kind == "text":
            start: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": piece} for piece in body]
        elif kind == "thinking":
            pieces, signature = body
            start = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [{"type": "thinking_delta", "thinking": piece} for piece in pieces]
            deltas.append({"type": "signature_delta", "signature": signature})
        else:
            call_id, name, pieces = body
            start = {"type": "tool_use", "id": call_id, "name": name, "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": piece} for piece in pieces]
        events.append(("content_block_start", {"type": "content_block_start", "index": index, "content_block": start}))
        events += [("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}) for d in deltas]
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": output_tokens},
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return events

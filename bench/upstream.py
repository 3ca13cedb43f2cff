"""A local OpenAI-compatible model API for bench/relay.py: ``POST /v1/chat/completions`` with ``stream: true``.

It answers as OpenAI does: ``data: {chunk json}`` frames (a role chunk, one content chunk per token, a finish chunk,
a usage chunk) and ``data: [DONE]``, chunked over a keep-alive HTTP/1.1 connection. It runs as a process of its own
(``python bench/upstream.py`` prints its port, then serves until stopped), so writing tokens shares no GIL with the
clients that time them. What a call does is read from ``key=value`` words in its last user message:

- ``ttft_ms``: wait this long before the first token (default 0);
- ``tokens``: how many content chunks, one token each: ``t0``, `` t1``, `` t2``, ... (default 5);
- ``rate``: tokens per second after the first; 0 (default) writes them as fast as the socket takes them;
- ``stamp=1``: each token is `` <n>@<CLOCK_MONOTONIC ns when written>`` instead (one clock for every process here);
- ``tag``: remember when the call started, wrote its first token, ended, and saw its client go (end of file on the
  socket, or a failed write); ``GET /calls/<tag>`` answers those as JSON (nanoseconds, CLOCK_MONOTONIC).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from typing import Any

MODEL = "bench-model"
# Large answers go out in writes of about this many bytes.
WRITE_BYTES = 64 * 1024


def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    """One ``chat.completion.chunk`` SSE frame."""
    body = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def ending(completion_tokens: int) -> bytes:
    """The finish chunk, the usage chunk (``stream_options.include_usage``) and ``[DONE]``."""
    usage = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": MODEL,
        "choices": [],
        "usage": {"prompt_tokens": 10, "completion_tokens": completion_tokens, "total_tokens": 10 + completion_tokens},
    }
    return chunk({}, "stop") + b"data: " + json.dumps(usage).encode() + b"\n\ndata: [DONE]\n\n"


def numbered(count: int) -> list[str]:
    """The tokens of an answer without stamps: ``t0``, `` t1``, ...; joined, ``t0 t1 t2 ...``."""
    return [f"t{n}" if n == 0 else f" t{n}" for n in range(count)]


def parse_request(content: str) -> dict[str, str]:
    return dict(word.split("=", 1) for word in content.split() if "=" in word)


@dataclass
class Call:
    started_ns: int
    first_token_ns: int | None = None
    ended_ns: int | None = None
    closed_ns: int | None = None  # the client went before the answer ended


CALLS: dict[str, Call] = {}
HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)


def framed(data: bytes) -> bytes:
    """One HTTP/1.1 chunk."""
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


class ClientGone(Exception):
    pass


async def completion(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: dict[str, Any]) -> None:
    user = [m for m in request.get("messages", []) if m.get("role") == "user"]
    params = parse_request(str(user[-1].get("content", "")) if user else "")
    ttft = float(params.get("ttft_ms", "0")) / 1000
    count = int(params.get("tokens", "5"))
    rate = float(params.get("rate", "0"))
    stamped = params.get("stamp") == "1"
    call = Call(started_ns=time.monotonic_ns())
    if "tag" in params:
        CALLS[params["tag"]] = call
    # The client sends nothing more until this answer has ended (no pipelining), so a read that returns is the
    # client going away: end of file, or a reset.
    gone = asyncio.ensure_future(reader.read(1))

    async def send(data: bytes) -> None:
        if gone.done():
            raise ClientGone
        writer.write(framed(data))
        await writer.drain()

    async def pause(seconds: float) -> None:
        if seconds > 0:
            await asyncio.wait({gone}, timeout=seconds)
        if gone.done():
            raise ClientGone

    try:
        writer.write(HEAD)
        await send(chunk({"role": "assistant", "content": ""}))
        await pause(ttft)
        loop = asyncio.get_running_loop()
        started = loop.time()
        if rate <= 0 and not stamped:
            call.first_token_ns = time.monotonic_ns()
            batch = b""
            for token in numbered(count):
                batch += chunk({"content": token})
                if len(batch) >= WRITE_BYTES:
                    await send(batch)
                    batch = b""
            await send(batch + ending(count))
        else:
            tokens = numbered(count)
            for n in range(count):
                if rate > 0:
                    await pause(started + n / rate - loop.time())
                token = f" {n}@{time.monotonic_ns()}" if stamped else tokens[n]
                await send(chunk({"content": token}))
                if n == 0:
                    call.first_token_ns = time.monotonic_ns()
            await send(ending(count))
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        call.ended_ns = time.monotonic_ns()
    except (ClientGone, ConnectionError):
        call.closed_ns = time.monotonic_ns()
        raise ClientGone from None
    finally:
        gone.cancel()  # and wait for it: the next request's read must not find this one still waiting
        with contextlib.suppress(asyncio.CancelledError, ConnectionError):
            await gone


async def respond(writer: asyncio.StreamWriter, status: str, body: Any) -> None:
    data = json.dumps(body).encode()
    head = f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    writer.write(head.encode() + data)
    await writer.drain()


async def serve_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            request_line, *lines = head.decode("latin-1").split("\r\n")
            method, path, _ = request_line.split(" ", 2)
            headers = {key.strip().lower(): value.strip() for key, _, value in (line.partition(":") for line in lines)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            if method == "POST" and path.endswith("/chat/completions"):
                await completion(reader, writer, json.loads(body))
            elif method == "GET" and path.startswith("/calls/"):
                call = CALLS.get(path.removeprefix("/calls/"))
                await respond(writer, "200 OK" if call else "404 Not Found", asdict(call) if call else {})
            else:
                await respond(writer, "404 Not Found", {"error": {"message": f"no route {method} {path}"}})
    except (asyncio.IncompleteReadError, ConnectionError, ClientGone):
        pass
    finally:
        writer.close()


async def main() -> None:
    server = await asyncio.start_server(serve_connection, "127.0.0.1", 0, backlog=4096)
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


class Upstream:
    """The model API as a child process of the bench; ``base_url`` for clients, ``call(tag)`` for what it saw."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - this file
            [sys.executable, __file__], stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None  # noqa: S101 - piped above
        self.port = int(self.process.stdout.readline())

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def call(self, tag: str) -> Call | None:
        url = f"http://127.0.0.1:{self.port}/calls/{tag}"
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return Call(**json.loads(response.read()))
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise

    def stop(self) -> None:
        self.process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())

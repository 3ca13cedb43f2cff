"""The ``http`` agent kind: a tenant's own agent behind one HTTP route (docs/agents.md, "An HTTP agent").

Brook POSTs the conversation to the tenant's ``agent_url`` as JSON, signed as Standard Webhooks specify (headers
``webhook-id``, ``webhook-timestamp``, ``webhook-signature``: HMAC-SHA256 over ``id.timestamp.body`` with the
tenant's ``agent_signing_secret``; https://www.standardwebhooks.com/, signed by the ``standardwebhooks`` library), and
reads the answer as it streams: Brook's own events (the vocabulary agents push, docs/agents.md) as NDJSON (one JSON
object a line) or as Server-Sent Events (one JSON object per ``data:``), ending with ``message.completed`` (or
``message.failed``). The body:

    {"message": "the visitor's message", "conversation": [{"role": "user", "content": "..."}, ...]}

Stop closes the connection. Failures have stable codes: ``AGENT_UNREACHABLE`` (no connection), ``AGENT_TIMEOUT``
(``BROOK_AGENT_CONNECT_TIMEOUT``, ``BROOK_AGENT_FIRST_EVENT_TIMEOUT``, ``BROOK_AGENT_IDLE_TIMEOUT``),
``AGENT_BAD_RESPONSE`` (an HTTP error, another content type, an event Brook does not know, an answer that ends
without its terminal event), ``AGENT_ERROR`` (the agent sent ``message.failed``).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

import httpx2 as httpx
from django.conf import settings
from standardwebhooks.webhooks import Webhook

from chat.events import EventType
from chat.pushed import USAGE, InvalidEvent, Pushed, parse_event
from core.errors import ErrorCode
from streaming.agents.base import Agent, AgentError, Emitter, Turn, Usage
from tenants.models import Tenant

NDJSON = "application/x-ndjson"
SSE = "text/event-stream"


def signed_headers(secret: str, body: str) -> dict[str, str]:
    """The Standard Webhooks headers for ``body``, signed with ``secret`` (``whsec_…``)."""
    message_id = f"msg_{uuid.uuid4().hex}"
    now = datetime.now(tz=UTC)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, now, body),
    }


def _bad(message: str) -> AgentError:
    return AgentError(ErrorCode.AGENT_BAD_RESPONSE, message)


async def _lines(response: httpx.Response) -> AsyncIterator[str]:
    """The JSON texts of the answer: NDJSON lines, or the data of SSE events."""
    kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in {NDJSON, "application/jsonl", "application/json-seq", SSE}:
        raise _bad(f"The assistant's agent answered {kind or 'no content type'}, not {NDJSON} or {SSE}.")
    data: list[str] = []
    async for line in response.aiter_lines():
        if kind != SSE:
            if line.strip():
                yield line
            continue
        if line == "":  # an SSE event ends with a blank line (WHATWG HTML, "event stream")
            if data:
                yield "\n".join(data)
                data = []
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    if data:
        yield "\n".join(data)


class HttpAgent(Agent):
    """Answers with the tenant's own HTTP agent (see the module docstring)."""

    name = "http"

    def __init__(self, tenant: Tenant) -> None:
        self.url = tenant.agent_url
        self.secret = tenant.agent_signing_secret

    async def run(self, conversation: Sequence[Turn], emit: Emitter) -> None:
        if not self.url:
            raise AgentError(ErrorCode.AGENT_UNREACHABLE, "The assistant's agent has no URL.")
        body = json.dumps(
            {
                "message": conversation[-1].content if conversation else "",
                "conversation": [{"role": turn.role, "content": turn.content} for turn in conversation],
            },
            ensure_ascii=False,
        )
        headers = {"Content-Type": "application/json", "Accept": f"{NDJSON}, {SSE}"}
        headers |= signed_headers(self.secret, body)
        timeout = httpx.Timeout(
            connect=float(settings.BROOK_AGENT_CONNECT_TIMEOUT),
            read=float(settings.BROOK_AGENT_IDLE_TIMEOUT),
            write=float(settings.BROOK_AGENT_CONNECT_TIMEOUT),
            pool=float(settings.BROOK_AGENT_CONNECT_TIMEOUT),
        )
        try:
            async with (
                httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client,
                client.stream("POST", self.url, content=body.encode(), headers=headers) as response,
            ):
                if response.status_code >= 300:
                    raise _bad(f"The assistant's agent answered HTTP {response.status_code}.")
                await self._relay(response, emit)
        except httpx.TimeoutException:
            raise AgentError(ErrorCode.AGENT_TIMEOUT, "The assistant's agent took too long to answer.") from None
        except httpx.HTTPError:
            raise AgentError(ErrorCode.AGENT_UNREACHABLE, "The assistant's agent could not be reached.") from None

    async def _relay(self, response: httpx.Response, emit: Emitter) -> None:
        steps: dict[int, int] = {}  # the agent's step index → the reply's
        lines = aiter(_lines(response))
        wait = float(settings.BROOK_AGENT_FIRST_EVENT_TIMEOUT)
        while True:
            try:
                async with asyncio.timeout(wait):
                    line = await anext(lines)
            except StopAsyncIteration:
                raise _bad("The assistant's agent ended its answer without message.completed.") from None
            except TimeoutError:
                raise AgentError(ErrorCode.AGENT_TIMEOUT, "The assistant's agent went quiet.") from None
            wait = float(settings.BROOK_AGENT_IDLE_TIMEOUT)
            try:
                event = parse_event(json.loads(line), seq_required=False)
            except (ValueError, InvalidEvent) as error:
                raise _bad(f"The assistant's agent sent an event Brook cannot read: {str(error)[:200]}") from None
            if await self._apply(event, emit, steps):
                return

    @staticmethod
    async def _apply(event: Pushed, emit: Emitter, steps: dict[int, int]) -> bool:
        """Report one event to the emitter; True once the answer has ended."""
        data = event.data
        kind = event.type
        if kind == EventType.STEP_STARTED:
            steps[data["index"]] = await emit.step_started(
                kind=data["kind"], title=data["title"], detail=data["detail"], metadata=data["metadata"]
            )
        elif kind == EventType.STEP_COMPLETED:
            if data["index"] not in steps:
                raise _bad(f"The assistant's agent completed step {data['index']}, which it never started.")
            await emit.step_completed(
                steps.pop(data["index"]), status=data["status"], detail=data.get("detail"), metadata=data["metadata"]
            )
        elif kind == EventType.TEXT_DELTA:
            await emit.text_delta(data["delta"])
        elif kind == EventType.REASONING_DELTA:
            await emit.reasoning_delta(data["delta"])
        elif kind == EventType.TOOL_CALL:
            await emit.tool_call(call_id=data["call_id"], name=data["name"], arguments=data["arguments"])
        elif kind == EventType.TOOL_RESULT:
            try:
                await emit.tool_result(call_id=data["call_id"], result=data["result"], is_error=data["is_error"])
            except ValueError:
                raise _bad(f"The assistant's agent sent a result for unknown tool call {data['call_id']!r}.") from None
        elif kind == USAGE:
            await emit.usage(
                Usage(
                    model=data["model"],
                    prompt_tokens=data["prompt_tokens"] or 0,
                    completion_tokens=data["completion_tokens"] or 0,
                    reasoning_tokens=data["reasoning_tokens"] or 0,
                )
            )
        elif kind == EventType.MESSAGE_FAILED:
            raise AgentError(ErrorCode.AGENT_ERROR, data["message"] or "The assistant could not finish this reply.")
        else:  # message.completed, or message.cancelled: the agent stopped of its own accord
            return True
        return False

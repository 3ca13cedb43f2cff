"""A blocking Python agent, run as a Brook agent (docs/agents.md, "In-process Python agents").

Many agents already exist as one blocking call that reports progress through a callback, the shape of seed 002:
``process_query(message, context, progress_callback) -> result``. ``SyncAgent`` runs such a function in a worker
thread of its own pool (``BROOK_SYNC_AGENT_THREADS``), so the event loop never blocks:

- ``message``: the visitor's message (a string);
- ``context``: ``{"history": [{"role", "content"}, ...]}``, the earlier turns, oldest first;
- ``progress_callback(stage, payload=None)``: each call becomes a completed ``thinking`` step titled after ``stage``
  (``"intent_parsed"`` → "Intent parsed"), with the payload in its metadata; it returns once the step is stored;
- the result becomes the answer: a string as it is; a dict's ``answer``, ``response``, ``text`` or ``message`` string;
  anything else as JSON.

Stop reaches the function at its next callback, which raises ``AgentStopped`` inside it (a thread cannot be killed);
nothing it reports after Stop is stored. An exception from the function fails the reply with ``AGENT_ERROR``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
from collections.abc import Callable, Sequence
from typing import Any

from django.conf import settings

from chat.models import StepKind
from streaming.agents.base import Agent, Emitter, Turn

ProcessQuery = Callable[[str, dict[str, Any], Callable[..., None]], Any]

_pool: concurrent.futures.ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _threads() -> concurrent.futures.ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=settings.BROOK_SYNC_AGENT_THREADS, thread_name_prefix="brook-sync-agent"
            )
        return _pool


class AgentStopped(Exception):
    """Raised inside a blocking agent's progress callback once its reply was stopped: the agent should let it end."""


def _json_safe(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def answer_text(result: Any) -> str:
    """The answer a blocking agent's result stands for (see the module docstring)."""
    if result is None:
        return ""
    if isinstance(result, str):
        return result
    if isinstance(result, dict):
        for name in ("answer", "response", "text", "message"):
            if isinstance(result.get(name), str):
                return str(result[name])
    return json.dumps(result, default=str, ensure_ascii=False, indent=2)


def _title(stage: Any) -> str:
    words = str(stage).replace("_", " ").replace("-", " ").strip()
    return (words[:1].upper() + words[1:])[:200] or "Progress"


class SyncAgent(Agent):
    """Runs a blocking ``process_query(message, context, progress_callback)`` as a Brook agent."""

    name = "sync"

    def __init__(self, process_query: ProcessQuery) -> None:
        self.process_query = process_query

    async def run(self, conversation: Sequence[Turn], emit: Emitter) -> None:
        loop = asyncio.get_running_loop()
        stopped = threading.Event()
        reports: list[concurrent.futures.Future[None]] = []
        message = conversation[-1].content if conversation else ""
        context = {"history": [{"role": turn.role, "content": turn.content} for turn in conversation[:-1]]}

        async def report(stage: Any, payload: Any) -> None:
            if stopped.is_set():
                return
            detail = "" if payload is None else str(payload)[:500]
            async with emit.step(kind=StepKind.THINKING, title=_title(stage), detail=detail) as step:
                step.metadata = {"stage": str(stage), "payload": _json_safe(payload)}

        def progress(stage: Any, payload: Any = None) -> None:
            if stopped.is_set():
                raise AgentStopped("The reply was stopped.")
            future = asyncio.run_coroutine_threadsafe(report(stage, payload), loop)
            reports.append(future)
            future.result()  # in order, and stored before the agent goes on
            if stopped.is_set():
                raise AgentStopped("The reply was stopped.")

        work = loop.run_in_executor(_threads(), self.process_query, message, context, progress)
        try:
            result = await work
        except asyncio.CancelledError:
            stopped.set()  # the thread stops at its next callback; wait for what it is still storing
            await asyncio.gather(*(asyncio.wrap_future(f) for f in reports), return_exceptions=True)
            raise
        answer = answer_text(result)
        if answer:
            await emit.text_delta(answer)

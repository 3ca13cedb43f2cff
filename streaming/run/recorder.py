"""The emitter the runner gives an agent: it turns what the agent says into the reply's event log.

Store, then publish: every event is written (with the step rows and snapshots it implies) before it is fanned out.
Token deltas are coalesced: the first delta of a burst is written at once; deltas that follow within
``BROOK_DELTA_FLUSH_MS`` are merged into one event and written together when the window closes, so database writes
grow with steps and time, not tokens. Steps, tool calls and the terminal event are written at once.

See docs/events.md.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from django.utils import timezone

from chat import services
from chat.events import DELTA_TYPES, EventType, LoggedEvent
from chat.models import MessageStatus, StepKind, StepStatus
from chat.visibility import shows_reasoning, shows_steps
from core import metrics
from core.db_bridge import db
from streaming.agents.base import Emitter, Usage
from tenants.models import ThoughtVisibility

Publish = Callable[[Sequence[LoggedEvent]], Awaitable[None]]


def _json_safe(value: Any) -> Any:
    """Tool arguments and results as JSON (anything else becomes its string form), so they always store."""
    return json.loads(json.dumps(value, default=str))


def _elapsed_ms(since: float) -> int:
    return max(0, round((time.monotonic() - since) * 1000))


class LogRecorder(Emitter):
    """Writes one reply's log, starting at ``next_seq``; ``finish`` writes the terminal event."""

    def __init__(
        self,
        *,
        reply_id: uuid.UUID,
        next_seq: int,
        flush_interval: float,
        publish: Publish,
        visibility: str = ThoughtVisibility.FULL,
        tenant: str = "",
        delivery: str = "",
    ) -> None:
        self.reply_id = reply_id
        self._metric_labels = {"tenant": tenant, "delivery": delivery}  # core/metrics.py
        # What the tenant lets the widget see: hidden parts are neither stored nor sent (chat/visibility.py).
        self._keeps_steps = shows_steps(visibility)
        self._keeps_reasoning = shows_reasoning(visibility)
        self._next_seq = next_seq
        self._interval = flush_interval
        self._publish = publish
        self._began = time.monotonic()
        self._first_token_ms: int | None = None
        self._content: list[str] = []
        self._reasoning: list[str] = []
        self._next_step = 0
        self._open_steps: dict[int, float] = {}
        self._tool_steps: dict[str, int] = {}
        self._usage: Usage | None = None
        # What the next flush writes.
        # Events the next flush writes; a run of deltas of one type is kept as its parts and joined once, at flush.
        self._pending: list[tuple[str, dict[str, Any] | list[str]]] = []
        self._pending_steps: list[services.StepOpened | services.StepClosed] = []
        self._snapshot_due = False
        self._lock = asyncio.Lock()
        self._last_delta_flush = float("-inf")  # the coalescing window runs from the last write of deltas
        self._timer: asyncio.TimerHandle | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._failure: BaseException | None = None
        self.writes = 0  # flushes, for benchmarks

    # --- what the agent reports -------------------------------------------------------------------------------------

    @property
    def content(self) -> str:
        return "".join(self._content)

    @property
    def reasoning(self) -> str:
        return "".join(self._reasoning)

    async def step_started(
        self, *, kind: str, title: str, detail: str = "", metadata: dict[str, Any] | None = None
    ) -> int:
        index = self._next_step
        self._next_step += 1
        self._open_steps[index] = time.monotonic()
        started_at = timezone.now()
        safe = _json_safe(metadata or {})
        if not self._keeps_steps:
            return index
        self._pending_steps.append(services.StepOpened(index, kind, title, detail, safe, started_at))
        await self._add(
            EventType.STEP_STARTED,
            {
                "index": index,
                "kind": kind,
                "title": title,
                "detail": detail,
                "metadata": safe,
                "started_at": started_at.isoformat(),
            },
        )
        return index

    async def step_completed(
        self,
        index: int,
        *,
        status: str = StepStatus.COMPLETED,
        detail: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        started = self._open_steps.pop(index, None)
        if started is None:
            raise ValueError(f"Step {index} is not running")
        duration = _elapsed_ms(started)
        if not self._keeps_steps:
            return
        safe = _json_safe(metadata) if metadata else {}
        self._pending_steps.append(services.StepClosed(index, status, duration, detail, safe))
        self._snapshot_due = True
        data: dict[str, Any] = {"index": index, "status": status, "duration_ms": duration}
        if detail is not None:
            data["detail"] = detail
        if safe:
            data["metadata"] = safe
        await self._add(EventType.STEP_COMPLETED, data)

    async def reasoning_delta(self, delta: str) -> None:
        if delta:
            self._mark_first_token()
            if not self._keeps_reasoning:
                return
            self._reasoning.append(delta)
            await self._add(EventType.REASONING_DELTA, {"delta": delta})

    async def text_delta(self, delta: str) -> None:
        if delta:
            self._mark_first_token()
            self._content.append(delta)
            await self._add(EventType.TEXT_DELTA, {"delta": delta})

    async def tool_call(self, *, call_id: str, name: str, arguments: dict[str, Any]) -> int:
        index = await self.step_started(
            kind=StepKind.TOOL_CALL,
            title=f"Calling {name}",
            metadata={"call_id": call_id, "name": name, "arguments": arguments},
        )
        self._tool_steps[call_id] = index
        if not self._keeps_steps:
            return index
        await self._add(
            EventType.TOOL_CALL, {"call_id": call_id, "name": name, "arguments": _json_safe(arguments), "step": index}
        )
        return index

    async def tool_result(self, *, call_id: str, result: Any, is_error: bool = False) -> None:
        index = self._tool_steps.pop(call_id, None)
        if index is None:
            raise ValueError(f"No tool call {call_id!r} is running")
        safe = _json_safe(result)
        if not self._keeps_steps:
            await self.step_completed(index)
            return
        await self._add(
            EventType.TOOL_RESULT, {"call_id": call_id, "result": safe, "is_error": is_error, "step": index}
        )
        await self.step_completed(
            index,
            status=StepStatus.FAILED if is_error else StepStatus.COMPLETED,
            metadata={"result": safe, "is_error": is_error},
        )

    async def usage(self, usage: Usage) -> None:
        self._usage = usage

    def _mark_first_token(self) -> None:
        if self._first_token_ms is None:
            self._first_token_ms = _elapsed_ms(self._began)

    # --- writing ----------------------------------------------------------------------------------------------------

    async def _add(self, kind: EventType, data: dict[str, Any]) -> None:
        if self._failure is not None:
            raise self._failure
        if kind in DELTA_TYPES:
            last = self._pending[-1] if self._pending else None
            if last is not None and last[0] == kind and isinstance(last[1], list):
                last[1].append(data["delta"])
            else:
                self._pending.append((kind, [data["delta"]]))
            if self._timer is None and not self._lock.locked():
                wait = self._last_delta_flush + self._interval - time.monotonic()
                if wait <= 0:
                    await self.flush()  # the first delta of a burst is never held back
                else:
                    self._timer = asyncio.get_running_loop().call_later(wait, self._flush_later)
            return
        self._pending.append((kind, data))
        await self.flush()

    def _flush_later(self) -> None:
        self._timer = None
        task = asyncio.get_running_loop().create_task(self._flush_in_background())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _flush_in_background(self) -> None:
        try:
            await self.flush()
        except BaseException as error:  # surfaced to the agent at its next emit, and to finish()
            self._failure = error

    async def flush(self) -> None:
        """Write everything pending as consecutive events, then publish them. Serialized, so seqs stay in order."""
        async with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if not self._pending:
                return
            items = [
                (kind, {"delta": "".join(data)} if isinstance(data, list) else data) for kind, data in self._pending
            ]
            self._pending = []
            steps, self._pending_steps = self._pending_steps, []
            first = self._next_seq
            self._next_seq += len(items)
            snapshot = None
            if self._snapshot_due:
                snapshot = services.Snapshot(seq=self._next_seq - 1, content=self.content, reasoning=self.reasoning)
                self._snapshot_due = False
            events = await db(services.log_append)(
                message_id=self.reply_id, first_seq=first, items=items, steps=steps, snapshot=snapshot
            )
            self.writes += 1
            if any(kind in DELTA_TYPES for kind, _ in items):
                self._last_delta_flush = time.monotonic()
            await self._publish(events)
            if self._pending and self._timer is None:  # deltas that arrived while this flush was writing
                self._timer = asyncio.get_running_loop().call_later(self._interval, self._flush_later)

    async def finish(
        self, status: MessageStatus, *, error_code: str = "", error_message: str = "", reason: str = ""
    ) -> LoggedEvent | None:
        """Close open steps, write what is pending, then the one terminal event. None if the log is not ours."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        leftover = StepStatus.COMPLETED if status == MessageStatus.COMPLETED else StepStatus.FAILED
        try:
            for index in list(self._open_steps):
                await self.step_completed(index, status=leftover)
            await self.flush()
        except services.LogConflict:
            return None
        usage = self._usage
        duration_ms = _elapsed_ms(self._began)
        data: dict[str, Any] = {"content": self.content, "reasoning": self.reasoning}
        if status == MessageStatus.COMPLETED:
            kind = EventType.MESSAGE_COMPLETED
            data |= {
                "usage": {
                    "model": usage.model if usage else "",
                    "prompt_tokens": usage.prompt_tokens if usage else None,
                    "completion_tokens": usage.completion_tokens if usage else None,
                    "reasoning_tokens": usage.reasoning_tokens if usage else None,
                },
                "time_to_first_token_ms": self._first_token_ms,
                "duration_ms": duration_ms,
            }
        elif status == MessageStatus.CANCELLED:
            kind = EventType.MESSAGE_CANCELLED
            data |= {"reason": reason or "cancelled", "duration_ms": duration_ms}
        else:
            kind = EventType.MESSAGE_FAILED
            data |= {"code": error_code, "message": error_message, "duration_ms": duration_ms}
        event = await db(services.reply_finish)(
            reply_id=self.reply_id,
            seq=self._next_seq,
            status=status,
            event_type=kind,
            event_data=data,
            content=self.content,
            reasoning=self.reasoning,
            duration_ms=duration_ms,
            time_to_first_token_ms=self._first_token_ms,
            model=usage.model if usage else "",
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            reasoning_tokens=usage.reasoning_tokens if usage else None,
            error_code=error_code,
            error_message=error_message,
        )
        if event is not None:
            self._next_seq += 1
            self.writes += 1
            await self._publish([event])
            metrics.record_reply_ended(
                **self._metric_labels,
                outcome=status,
                error_code=error_code,
                duration_ms=duration_ms,
                time_to_first_token_ms=self._first_token_ms,
                prompt_tokens=usage.prompt_tokens if usage else None,
                completion_tokens=usage.completion_tokens if usage else None,
                reasoning_tokens=usage.reasoning_tokens if usage else None,
            )
        return event

"""The emitter the runner gives an agent: it records steps, text, reasoning and usage on the reply.

Steps are written as they start and end, so a reply's progress is visible while it runs; answer and reasoning text
are kept in memory and written once, when the reply ends (the event-log issue makes deltas durable as they come).
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from asgiref.sync import sync_to_async
from django.utils import timezone

from chat import services
from chat.models import MessageStatus, StepKind, StepStatus
from streaming.agents.base import Emitter, Usage


def _json_safe(value: Any) -> Any:
    """Tool arguments and results as JSON (anything else becomes its string form), so metadata always saves."""
    return json.loads(json.dumps(value, default=str))


def _elapsed_ms(since: float) -> int:
    return max(0, round((time.monotonic() - since) * 1000))


class MessageRecorder(Emitter):
    """Records one assistant reply's work; ``finish`` writes the outcome."""

    def __init__(self, *, reply_id: uuid.UUID) -> None:
        self.reply_id = reply_id
        self._began = time.monotonic()
        self._first_token_ms: int | None = None
        self._content: list[str] = []
        self._reasoning: list[str] = []
        self._next_index = 0
        self._open_steps: dict[int, float] = {}
        self._tool_steps: dict[str, int] = {}
        self._usage: Usage | None = None

    @property
    def content(self) -> str:
        return "".join(self._content)

    @property
    def reasoning(self) -> str:
        return "".join(self._reasoning)

    async def step_started(
        self, *, kind: str, title: str, detail: str = "", metadata: dict[str, Any] | None = None
    ) -> int:
        index = self._next_index
        self._next_index += 1
        self._open_steps[index] = time.monotonic()
        await sync_to_async(services.step_start)(
            message_id=self.reply_id,
            index=index,
            kind=kind,
            title=title,
            detail=detail,
            metadata=_json_safe(metadata or {}),
            started_at=timezone.now(),
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
        await sync_to_async(services.step_finish)(
            message_id=self.reply_id,
            index=index,
            status=status,
            duration_ms=_elapsed_ms(started),
            detail=detail,
            metadata=_json_safe(metadata) if metadata else None,
        )

    def _mark_first_token(self) -> None:
        if self._first_token_ms is None:
            self._first_token_ms = _elapsed_ms(self._began)

    async def reasoning_delta(self, delta: str) -> None:
        if delta:
            self._mark_first_token()
            self._reasoning.append(delta)

    async def text_delta(self, delta: str) -> None:
        if delta:
            self._mark_first_token()
            self._content.append(delta)

    async def tool_call(self, *, call_id: str, name: str, arguments: dict[str, Any]) -> int:
        index = await self.step_started(
            kind=StepKind.TOOL_CALL,
            title=f"Calling {name}",
            metadata={"call_id": call_id, "name": name, "arguments": arguments},
        )
        self._tool_steps[call_id] = index
        return index

    async def tool_result(self, *, call_id: str, result: Any, is_error: bool = False) -> None:
        index = self._tool_steps.pop(call_id, None)
        if index is None:
            raise ValueError(f"No tool call {call_id!r} is running")
        await self.step_completed(
            index,
            status=StepStatus.FAILED if is_error else StepStatus.COMPLETED,
            metadata={"result": result, "is_error": is_error},
        )

    async def usage(self, usage: Usage) -> None:
        self._usage = usage

    async def finish(self, status: MessageStatus, *, error_code: str = "", error_message: str = "") -> bool:
        """Close steps left open (failed unless the reply completed) and record the outcome on the reply."""
        leftover = StepStatus.COMPLETED if status == MessageStatus.COMPLETED else StepStatus.FAILED
        for index in list(self._open_steps):
            await self.step_completed(index, status=leftover)
        usage = self._usage
        return await sync_to_async(services.reply_finish)(
            reply_id=self.reply_id,
            status=status,
            content=self.content,
            reasoning=self.reasoning,
            duration_ms=_elapsed_ms(self._began),
            time_to_first_token_ms=self._first_token_ms,
            model=usage.model if usage else "",
            prompt_tokens=usage.prompt_tokens if usage else None,
            completion_tokens=usage.completion_tokens if usage else None,
            error_code=error_code,
            error_message=error_message,
        )

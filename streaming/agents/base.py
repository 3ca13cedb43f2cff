"""The agent interface: an agent reads the conversation and reports its work to an emitter (docs/architecture.md).

Agents know nothing of HTTP, the database or transports. The runner hands each one an ``Emitter`` that records what it
says; every delivery mode (batch now; polling, SSE and WebSocket from the event log) is built on those records.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

from chat.models import StepStatus


@dataclass(frozen=True, slots=True)
class Turn:
    """One earlier message of the conversation, as an agent sees it."""

    role: str
    content: str


class AgentError(Exception):
    """A failure with a stable code and a message safe to show the visitor (no secrets, no upstream bodies)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Usage:
    """What a reply cost, as the model (or the demo agent) counts it."""

    model: str
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int = 0


@dataclass(slots=True)
class StepScope:
    """The step an agent is inside of; set ``detail`` or ``metadata`` before the block ends to record them."""

    index: int
    detail: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


class Emitter(abc.ABC):
    """What an agent reports to, in the order things happen. Implementations stamp times and measure durations."""

    @abc.abstractmethod
    async def step_started(
        self, *, kind: str, title: str, detail: str = "", metadata: dict[str, Any] | None = None
    ) -> int:
        """A step began; returns its index (0, 1, 2, … per message)."""

    @abc.abstractmethod
    async def step_completed(
        self,
        index: int,
        *,
        status: str = StepStatus.COMPLETED,
        detail: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """The step ``index`` ended; ``metadata`` is merged into what it started with."""

    @abc.abstractmethod
    async def reasoning_delta(self, delta: str) -> None:
        """More of the model's reasoning (never part of the answer)."""

    @abc.abstractmethod
    async def text_delta(self, delta: str) -> None:
        """More of the answer."""

    @abc.abstractmethod
    async def tool_call(self, *, call_id: str, name: str, arguments: dict[str, Any]) -> int:
        """The agent calls a tool; recorded as a running ``tool_call`` step whose index is returned."""

    @abc.abstractmethod
    async def tool_result(self, *, call_id: str, result: Any, is_error: bool = False) -> None:
        """The tool ``call_id`` returned; completes its step."""

    @abc.abstractmethod
    async def usage(self, usage: Usage) -> None:
        """The model and token counts of the reply."""

    @asynccontextmanager
    async def step(
        self, *, kind: str, title: str, detail: str = "", metadata: dict[str, Any] | None = None
    ) -> AsyncIterator[StepScope]:
        """``async with emit.step(kind=..., title=...) as step:`` starts a step and completes (or fails) it."""
        index = await self.step_started(kind=kind, title=title, detail=detail, metadata=metadata)
        scope = StepScope(index=index)
        try:
            yield scope
        except BaseException:
            await self.step_completed(index, status=StepStatus.FAILED, detail=scope.detail, metadata=scope.metadata)
            raise
        await self.step_completed(index, detail=scope.detail, metadata=scope.metadata)


class Agent(abc.ABC):
    """Produces one assistant reply: reads the conversation (oldest first, ending with the user's message)."""

    name: ClassVar[str]

    @abc.abstractmethod
    async def run(self, conversation: Sequence[Turn], emit: Emitter) -> None:
        """Do the work, reporting every step, delta, tool call and the usage to ``emit``. Raise to fail the reply."""

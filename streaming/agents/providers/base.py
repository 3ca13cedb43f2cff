"""What every model provider does for the LLM agent: stream one model call (docs/providers.md).

A provider turns Brook's provider-neutral conversation into its API's request, streams the answer, and reports
reasoning and text as they arrive through a ``Sink``. It returns the finished call: text, reasoning, tool calls and
usage. Failures are ``ProviderError`` with a stable code; the SDK's message never reaches the visitor.
"""

from __future__ import annotations

import abc
import asyncio
import weakref
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.errors import ErrorCode
from streaming.agents.base import AgentError
from streaming.agents.reasoning import TagSplitter
from streaming.agents.tools import Tool


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: dict[str, Any]


@dataclass(slots=True)
class ChatTurn:
    """One message of a model conversation: system, user, assistant (maybe with tool calls) or tool (a result)."""

    role: str
    content: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_call_id: str = ""
    # Provider-specific data a later turn must send back (Anthropic's thinking signature).
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ModelCall:
    """What one streamed call produced."""

    text: str = ""
    reasoning: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    provider: str
    model: str
    base_url: str = ""
    api_key: str = ""
    system_prompt: str = ""
    temperature: float | None = None
    max_tokens: int = 1024
    connect_timeout: float = 5.0
    first_token_timeout: float = 30.0
    idle_timeout: float = 20.0
    reasoning_starts_open: bool = False
    thinking_budget: int = 0


class ProviderError(AgentError):
    """A provider failure; ``retryable`` ones may be retried while nothing has reached a client yet."""

    def __init__(self, code: str, message: str, *, retryable: bool = False) -> None:
        super().__init__(code, message)
        self.retryable = retryable


def error_for_status(status: int) -> ProviderError:
    """An upstream HTTP status as a stable code; the message names only the status, never the upstream's body."""
    if status in (401, 403):
        return ProviderError(ErrorCode.PROVIDER_AUTH, f"The model provider refused the credentials ({status}).")
    if status == 404:
        return ProviderError(ErrorCode.PROVIDER_NOT_FOUND, "The model provider does not know this model (404).")
    if status == 429:
        return ProviderError(
            ErrorCode.PROVIDER_RATE_LIMITED, "The model provider is rate limiting (429).", retryable=True
        )
    if status >= 500 or status < 400:  # below 400: an error event inside a 200 stream (e.g. overloaded)
        return ProviderError(ErrorCode.PROVIDER_UNAVAILABLE, "The model provider failed.", retryable=True)
    return ProviderError(ErrorCode.PROVIDER_BAD_REQUEST, f"The model provider rejected the request ({status}).")


def timed_out() -> ProviderError:
    return ProviderError(ErrorCode.PROVIDER_TIMEOUT, "The model provider did not answer in time.", retryable=True)


def unreachable() -> ProviderError:
    return ProviderError(ErrorCode.PROVIDER_UNREACHABLE, "The model provider could not be reached.", retryable=True)


def malformed() -> ProviderError:
    return ProviderError(ErrorCode.PROVIDER_BAD_RESPONSE, "The model provider sent a malformed response.")


def translate_sdk_error(error: Exception, sdk: Any) -> ProviderError:
    """A Stainless-generated SDK's exception (``openai``, ``anthropic``: the same class names) as a ProviderError."""
    if isinstance(error, ProviderError):
        return error
    if isinstance(error, sdk.APITimeoutError):
        return timed_out()
    if isinstance(error, sdk.APIConnectionError):
        return unreachable()
    if isinstance(error, sdk.APIStatusError):
        return error_for_status(error.status_code)
    if isinstance(error, sdk.APIError | ValueError | KeyError | TypeError | AttributeError):
        return malformed()
    raise error


@dataclass
class Sink:
    """Where a provider reports deltas as they arrive; ``emitted`` tells the agent whether a retry is still safe."""

    on_reasoning: Callable[[str], Awaitable[None]]
    on_text: Callable[[str], Awaitable[None]]
    emitted: bool = False

    async def reasoning(self, delta: str) -> None:
        if delta:
            self.emitted = True
            await self.on_reasoning(delta)

    async def text(self, delta: str) -> None:
        if delta:
            self.emitted = True
            await self.on_text(delta)


class Deltas:
    """One call's text and reasoning as they stream: text goes through the tag splitter, both go to the sink."""

    def __init__(self, sink: Sink, *, starts_in_reasoning: bool) -> None:
        self.sink = sink
        self.splitter = TagSplitter(starts_in_reasoning=starts_in_reasoning)
        self.text: list[str] = []
        self.reasoning: list[str] = []

    async def add_text(self, chunk: str) -> None:
        await self._report(self.splitter.feed(chunk))

    async def add_reasoning(self, chunk: str) -> None:
        if chunk:
            self.reasoning.append(chunk)
            await self.sink.reasoning(chunk)

    async def finish(self, result: ModelCall) -> None:
        await self._report(self.splitter.finish())
        result.text, result.reasoning = "".join(self.text), "".join(self.reasoning)

    async def _report(self, pieces: Sequence[tuple[str, str]]) -> None:
        for kind, piece in pieces:
            if kind == "reasoning":
                await self.add_reasoning(piece)
            else:
                self.text.append(piece)
                await self.sink.text(piece)


_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Hashable, Any]] = weakref.WeakKeyDictionary()


def loop_client(key: Hashable, make: Callable[[], Any]) -> Any:
    """One SDK client per configuration and event loop, so calls reuse connections (no TLS handshake per call).

    Async HTTP clients belong to the loop they were made on; the cache forgets a loop's clients when the loop goes.
    """
    per_loop = _clients.setdefault(asyncio.get_running_loop(), {})
    if key not in per_loop:
        per_loop[key] = make()
    return per_loop[key]


class Provider(abc.ABC):
    def __init__(self, config: ProviderConfig) -> None:
        self.config = config

    @abc.abstractmethod
    async def stream(self, turns: Sequence[ChatTurn], tools: Sequence[Tool], sink: Sink) -> ModelCall:
        """Stream one model call; report deltas to ``sink``; close the upstream request if cancelled."""

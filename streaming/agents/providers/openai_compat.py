"""OpenAI-compatible chat completions (OpenAI, Groq, DeepSeek, vLLM, Ollama, OpenRouter) through the ``openai`` SDK.

Streams ``chat.completions.create(stream=True, stream_options={"include_usage": True})``. Reasoning arrives as
``delta.reasoning_content`` (DeepSeek, vLLM), ``delta.reasoning`` (Groq's parsed format, OpenRouter, Ollama), or in
the text between ``<think>`` tags (``streaming.agents.reasoning``). Tool calls arrive as argument fragments per index
and are assembled here. docs/providers.md lists how each failure maps to a code.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import openai
from openai import AsyncOpenAI, AsyncStream

from core.errors import ErrorCode
from streaming.agents.providers.base import (
    ChatTurn,
    Deltas,
    ModelCall,
    Provider,
    ProviderError,
    Sink,
    ToolCall,
    loop_client,
    malformed,
    timed_out,
    translate_sdk_error,
)
from streaming.agents.tools import Tool


def _messages(turns: Sequence[ChatTurn]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for turn in turns:
        if turn.role == "tool":
            out.append({"role": "tool", "tool_call_id": turn.tool_call_id, "content": turn.content})
        elif turn.tool_calls:
            out.append(
                {
                    "role": "assistant",
                    "content": turn.content or None,
                    "tool_calls": [
                        {
                            "id": call.id,
                            "type": "function",
                            "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
                        }
                        for call in turn.tool_calls
                    ],
                }
            )
        else:
            out.append({"role": turn.role, "content": turn.content})
    return out


def _tools(tools: Sequence[Tool]) -> list[dict[str, Any]]:
    return [
        {"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}
        for t in tools
    ]


class _ToolCallBuilder:
    def __init__(self) -> None:
        self.id = ""
        self.name = ""
        self.arguments: list[str] = []

    def build(self) -> ToolCall:
        raw = "".join(self.arguments) or "{}"
        try:
            arguments = json.loads(raw)
        except json.JSONDecodeError:
            raise ProviderError(
                ErrorCode.PROVIDER_BAD_RESPONSE, f"The model sent malformed arguments for {self.name!r}."
            ) from None
        if not isinstance(arguments, dict):
            arguments = {"value": arguments}
        return ToolCall(id=self.id, name=self.name, arguments=arguments)


class OpenAICompatible(Provider):
    """Chat completions over the ``openai`` SDK against any compatible base URL."""

    def client(self) -> AsyncOpenAI:
        config = self.config
        key = ("openai", config.base_url, config.api_key, config.connect_timeout, config.idle_timeout)
        client: AsyncOpenAI = loop_client(
            key,
            lambda: AsyncOpenAI(
                api_key=config.api_key or "not-needed",  # local servers (Ollama, vLLM) take any key
                base_url=config.base_url or None,
                max_retries=0,  # the LLM agent retries, and only before the first token reached a client
                timeout=openai.Timeout(connect=config.connect_timeout, read=config.idle_timeout, write=10.0, pool=5.0),
            ),
        )
        return client

    async def stream(self, turns: Sequence[ChatTurn], tools: Sequence[Tool], sink: Sink) -> ModelCall:
        config = self.config
        request: dict[str, Any] = {
            "model": config.model,
            "messages": _messages(turns),
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": config.max_tokens,
        }
        if config.temperature is not None:
            request["temperature"] = config.temperature
        if tools:
            request["tools"] = _tools(tools)
        result = ModelCall()
        deltas = Deltas(sink, starts_in_reasoning=config.reasoning_starts_open)
        builders: dict[int, _ToolCallBuilder] = {}

        client = self.client()
        try:
            async with asyncio.timeout(config.first_token_timeout) as first_token:
                # The SDK's own client and stream (auth, base URL, timeouts, status errors, error events), with
                # each chunk left as its JSON: typed chunk objects cost about 300 µs of CPU a token, plain ones
                # about 30 µs (docs/benchmarks.md). ``post`` is the SDK's documented call for any endpoint.
                stream = await client.post(
                    "/chat/completions", cast_to=object, body=request, stream=True, stream_cls=AsyncStream[object]
                )
                async with stream:
                    async for item in stream:
                        if not isinstance(item, dict):
                            raise malformed()
                        chunk: dict[str, Any] = item
                        usage = chunk.get("usage")
                        if usage:
                            result.prompt_tokens = usage.get("prompt_tokens") or 0
                            result.completion_tokens = usage.get("completion_tokens") or 0
                            details = usage.get("completion_tokens_details") or {}
                            result.reasoning_tokens = details.get("reasoning_tokens") or 0
                        for choice in chunk.get("choices") or ():
                            delta = choice.get("delta") or {}
                            thought = delta.get("reasoning_content") or delta.get("reasoning") or ""
                            if thought:
                                first_token.reschedule(None)
                                await deltas.add_reasoning(str(thought))
                            content = delta.get("content")
                            if content:
                                first_token.reschedule(None)
                                await deltas.add_text(str(content))
                            for fragment in delta.get("tool_calls") or ():
                                first_token.reschedule(None)
                                builder = builders.setdefault(int(fragment["index"]), _ToolCallBuilder())
                                builder.id = fragment.get("id") or builder.id
                                function = fragment.get("function")
                                if function is not None:
                                    builder.name = function.get("name") or builder.name
                                    builder.arguments.append(function.get("arguments") or "")
            await deltas.finish(result)
        except TimeoutError:
            raise timed_out() from None
        except Exception as error:
            raise translate_sdk_error(error, openai) from None
        result.tool_calls = [builders[index].build() for index in sorted(builders)]
        return result

"""Anthropic's Messages API, streamed through the ``anthropic`` SDK, with extended thinking and tool use.

Events: ``message_start`` (input tokens), ``content_block_start`` (text, thinking or tool_use), ``content_block_delta``
(``text_delta``, ``thinking_delta``, ``signature_delta``, ``input_json_delta``), ``message_delta`` (output tokens),
``message_stop``, and ``error`` inside a 200 stream (overloaded). Thinking blocks are kept with their signature and
sent back on the next turn of a tool loop, as the API requires. Text may also carry ``<thinking>`` tags (Claude
prompted to think out loud); they go through ``streaming.agents.reasoning`` like any provider's text.

See docs/providers.md.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import anthropic
from anthropic import AsyncAnthropic

from streaming.agents.providers.base import (
    ChatTurn,
    Deltas,
    ModelCall,
    Provider,
    Sink,
    ToolCall,
    loop_client,
    malformed,
    timed_out,
    translate_sdk_error,
)
from streaming.agents.tools import Tool


def _content(turn: ChatTurn) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = list(turn.extra.get("thinking_blocks", []))
    if turn.content:
        blocks.append({"type": "text", "text": turn.content})
    blocks += [{"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments} for c in turn.tool_calls]
    return blocks


def _messages(turns: Sequence[ChatTurn]) -> tuple[str, list[dict[str, Any]]]:
    """(system prompt, messages); tool results go back as the user's ``tool_result`` blocks."""
    system = "\n\n".join(turn.content for turn in turns if turn.role == "system")
    messages: list[dict[str, Any]] = []
    for turn in turns:
        if turn.role == "system":
            continue
        if turn.role == "tool":
            block = {"type": "tool_result", "tool_use_id": turn.tool_call_id, "content": turn.content}
            if messages and messages[-1]["role"] == "user" and isinstance(messages[-1]["content"], list):
                messages[-1]["content"].append(block)
            else:
                messages.append({"role": "user", "content": [block]})
        elif turn.role == "assistant" and (turn.tool_calls or turn.extra):
            messages.append({"role": "assistant", "content": _content(turn)})
        else:
            messages.append({"role": turn.role, "content": turn.content})
    return system, messages


class AnthropicMessages(Provider):
    def client(self) -> AsyncAnthropic:
        config = self.config
        key = ("anthropic", config.base_url, config.api_key, config.connect_timeout, config.idle_timeout)
        client: AsyncAnthropic = loop_client(
            key,
            lambda: AsyncAnthropic(
                api_key=config.api_key or "not-set",
                base_url=config.base_url or None,
                max_retries=0,
                timeout=anthropic.Timeout(
                    connect=config.connect_timeout, read=config.idle_timeout, write=10.0, pool=5.0
                ),
            ),
        )
        return client

    async def stream(self, turns: Sequence[ChatTurn], tools: Sequence[Tool], sink: Sink) -> ModelCall:
        config = self.config
        system, messages = _messages(turns)
        request: dict[str, Any] = {
            "model": config.model,
            "max_tokens": config.max_tokens,
            "messages": messages,
            "stream": True,
        }
        if system:
            request["system"] = system
        if config.thinking_budget:
            request["thinking"] = {"type": "enabled", "budget_tokens": config.thinking_budget}
        # No temperature: the current SDK's Messages.create no longer takes one (the tenant's is ignored here).
        if tools:
            request["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": t.parameters} for t in tools
            ]
        result = ModelCall()
        deltas = Deltas(sink, starts_in_reasoning=config.reasoning_starts_open)
        blocks: dict[int, dict[str, Any]] = {}

        client = self.client()
        try:
            async with asyncio.timeout(config.first_token_timeout) as first_token:
                stream = await client.messages.create(**request)
                async with stream:
                    async for event in stream:
                        if event.type == "message_start":
                            result.prompt_tokens = event.message.usage.input_tokens or 0
                        elif event.type == "content_block_start":
                            block = event.content_block
                            if block.type == "tool_use":
                                blocks[event.index] = {
                                    "type": "tool_use",
                                    "id": block.id,
                                    "name": block.name,
                                    "json": [],
                                }
                            elif block.type == "thinking":
                                blocks[event.index] = {"type": "thinking", "thinking": [], "signature": ""}
                        elif event.type == "content_block_delta":
                            first_token.reschedule(None)
                            delta = event.delta
                            if delta.type == "text_delta":
                                await deltas.add_text(delta.text)
                            elif delta.type == "thinking_delta":
                                blocks.setdefault(event.index, {"type": "thinking", "thinking": [], "signature": ""})
                                blocks[event.index]["thinking"].append(delta.thinking)
                                await deltas.add_reasoning(delta.thinking)
                            elif delta.type == "signature_delta":
                                blocks.setdefault(event.index, {"type": "thinking", "thinking": [], "signature": ""})
                                blocks[event.index]["signature"] += delta.signature
                            elif delta.type == "input_json_delta":
                                blocks[event.index]["json"].append(delta.partial_json)
                        elif event.type == "message_delta":
                            result.completion_tokens = event.usage.output_tokens or 0
            await deltas.finish(result)
        except TimeoutError:
            raise timed_out() from None
        except Exception as error:
            raise translate_sdk_error(error, anthropic) from None
        for index in sorted(blocks):
            block = blocks[index]
            if block["type"] == "tool_use":
                try:
                    arguments = json.loads("".join(block["json"]) or "{}")
                except json.JSONDecodeError:
                    raise malformed() from None
                result.tool_calls.append(ToolCall(id=block["id"], name=block["name"], arguments=arguments))
            elif block["type"] == "thinking":
                result.extra.setdefault("thinking_blocks", []).append(
                    {"type": "thinking", "thinking": "".join(block["thinking"]), "signature": block["signature"]}
                )
        return result

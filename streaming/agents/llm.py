"""The LLM agent: a model call streamed through the event log, looping through tool calls (docs/providers.md).

Each model call is a ``model_call`` step; each tool the model calls is a ``tool_call`` step with ``tool.call`` and
``tool.result`` events. The loop ends when the model answers without tools, or after ``MAX_ROUNDS`` calls. A failed
call is retried (bounded, with backoff) only if nothing of it has reached the log yet, so no token is ever doubled.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Sequence

from chat.models import StepKind
from core.errors import ErrorCode
from streaming.agents.base import Agent, AgentError, Emitter, StepScope, Turn, Usage
from streaming.agents.providers import provider_config, provider_for
from streaming.agents.providers.base import ChatTurn, ModelCall, Provider, ProviderError, Sink
from streaming.agents.tools import TOOLS, Tool, run_tool
from tenants.models import Tenant

logger = logging.getLogger(__name__)

MAX_ROUNDS = 5
MAX_ATTEMPTS = 3
BACKOFF_SECONDS = 0.5


class LlmAgent(Agent):
    """Answers with the tenant's model (or the process default)."""

    name = "llm"

    def __init__(self, tenant: Tenant) -> None:
        self.tenant = tenant

    async def run(self, conversation: Sequence[Turn], emit: Emitter) -> None:
        config = provider_config(self.tenant)
        provider = provider_for(config)
        turns = [ChatTurn(role="system", content=config.system_prompt)] if config.system_prompt else []
        turns += [ChatTurn(role=turn.role, content=turn.content) for turn in conversation]
        tools = list(TOOLS.values()) if self.tenant.llm_tools_enabled else []
        totals = ModelCall()
        for round_number in range(1, MAX_ROUNDS + 1):
            async with emit.step(kind=StepKind.MODEL_CALL, title=f"Calling {config.model}") as step:
                call = await self._call(provider, turns, tools, emit, step)
                step.metadata |= {
                    "provider": config.provider,
                    "model": config.model,
                    "round": round_number,
                    "prompt_tokens": call.prompt_tokens,
                    "completion_tokens": call.completion_tokens,
                    "reasoning_tokens": call.reasoning_tokens,
                    "tool_calls": [tool_call.name for tool_call in call.tool_calls],
                }
            totals.prompt_tokens += call.prompt_tokens
            totals.completion_tokens += call.completion_tokens
            totals.reasoning_tokens += call.reasoning_tokens
            if not call.tool_calls:
                break
            turns.append(ChatTurn(role="assistant", content=call.text, tool_calls=call.tool_calls, extra=call.extra))
            for tool_call in call.tool_calls:
                await emit.tool_call(call_id=tool_call.id, name=tool_call.name, arguments=tool_call.arguments)
                result, is_error = await asyncio.to_thread(run_tool, tool_call.name, tool_call.arguments)
                await emit.tool_result(call_id=tool_call.id, result=result, is_error=is_error)
                turns.append(ChatTurn(role="tool", content=json.dumps(result), tool_call_id=tool_call.id))
        else:
            raise AgentError(
                ErrorCode.TOOL_LOOP_LIMIT, f"The assistant called tools {MAX_ROUNDS} times without answering."
            )
        await emit.usage(
            Usage(
                model=config.model,
                prompt_tokens=totals.prompt_tokens,
                completion_tokens=totals.completion_tokens,
                reasoning_tokens=totals.reasoning_tokens,
            )
        )

    @staticmethod
    async def _call(
        provider: Provider,
        turns: list[ChatTurn],
        tools: list[Tool],
        emit: Emitter,
        step: StepScope,
    ) -> ModelCall:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            sink = Sink(on_reasoning=emit.reasoning_delta, on_text=emit.text_delta)
            try:
                return await provider.stream(turns, tools, sink)
            except ProviderError as error:
                step.metadata["attempts"] = attempt
                if not error.retryable or sink.emitted or attempt == MAX_ATTEMPTS:
                    raise
                delay = BACKOFF_SECONDS * 2 ** (attempt - 1) * random.uniform(0.8, 1.2)  # noqa: S311 - jitter
                logger.info("Model call failed with %s; retrying in %.2f s", error.code, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

"""Amazon Bedrock's Converse API, streamed with boto3's ``converse_stream`` (seed 004 streams Claude this way).

boto3 is synchronous, so the event stream is read in a worker thread that hands each event to the event loop; the
loop never blocks. Stop closes the event stream from the loop, which closes the HTTP connection under the thread.
Events: ``contentBlockStart`` (tool use), ``contentBlockDelta`` (``text``, ``reasoningContent`` with its signature,
``toolUse.input`` fragments), ``messageStop``, ``metadata`` (usage), and in-stream exceptions.

Credentials: a tenant's secret (or ``BROOK_LLM_API_KEY``) of the form ``ACCESS_KEY_ID:SECRET_ACCESS_KEY``; otherwise
boto3's own chain (environment, profile, instance role). ``llm_base_url`` is the endpoint URL (blank: AWS's);
the region is ``BROOK_LLM_REGION`` (default ``us-east-1``).

See docs/providers.md.
"""

from __future__ import annotations

import asyncio
import functools
import json
import threading
from collections.abc import Sequence
from typing import Any

import boto3  # type: ignore[import-untyped]
from botocore.config import Config  # type: ignore[import-untyped]
from botocore.exceptions import (  # type: ignore[import-untyped]
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from django.conf import settings

from streaming.agents.providers.base import (
    ChatTurn,
    Deltas,
    ModelCall,
    Provider,
    ProviderError,
    Sink,
    ToolCall,
    error_for_status,
    malformed,
    timed_out,
    unreachable,
)
from streaming.agents.tools import Tool

_STATUS_BY_CODE = {
    "AccessDeniedException": 403,
    "UnrecognizedClientException": 403,
    "ResourceNotFoundException": 404,
    "ValidationException": 400,
    "ThrottlingException": 429,
    "throttlingException": 429,
    "validationException": 400,
    "ServiceUnavailableException": 503,
    "serviceUnavailableException": 503,
    "InternalServerException": 500,
    "internalServerException": 500,
    "ModelStreamErrorException": 502,
    "modelStreamErrorException": 502,
    "ModelTimeoutException": 504,
}


def translate_error(error: Exception) -> ProviderError:
    if isinstance(error, ProviderError):
        return error
    if isinstance(error, ConnectTimeoutError | ReadTimeoutError):
        return timed_out()
    if isinstance(error, EndpointConnectionError):
        return unreachable()
    if isinstance(error, ClientError):  # EventStreamError (an exception inside the stream) is one too
        code = error.response.get("Error", {}).get("Code", "")
        status = _STATUS_BY_CODE.get(code) or error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 500)
        return error_for_status(int(status))
    if isinstance(error, BotoCoreError | ValueError | KeyError | TypeError):
        return malformed()
    raise error


def _messages(turns: Sequence[ChatTurn]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(system blocks, messages) in Converse's shape; tool results go back as the user's ``toolResult`` blocks."""
    system = [{"text": turn.content} for turn in turns if turn.role == "system" and turn.content]
    messages: list[dict[str, Any]] = []
    for turn in turns:
        if turn.role == "system":
            continue
        if turn.role == "tool":
            block = {"toolResult": {"toolUseId": turn.tool_call_id, "content": [{"text": turn.content}]}}
            if messages and messages[-1]["role"] == "user" and "toolResult" in messages[-1]["content"][0]:
                messages[-1]["content"].append(block)
            else:
                messages.append({"role": "user", "content": [block]})
            continue
        content: list[dict[str, Any]] = list(turn.extra.get("reasoning_blocks", []))
        if turn.content:
            content.append({"text": turn.content})
        content += [{"toolUse": {"toolUseId": c.id, "name": c.name, "input": c.arguments}} for c in turn.tool_calls]
        messages.append({"role": turn.role, "content": content or [{"text": ""}]})
    return system, messages


@functools.lru_cache(maxsize=32)
def _client(region: str, endpoint_url: str, api_key: str, connect_timeout: float, read_timeout: float) -> Any:
    """boto3 clients are thread-safe and slow to build (they load the service model): one per configuration."""
    credentials: dict[str, str] = {}
    if ":" in api_key:
        key_id, _, secret = api_key.partition(":")
        credentials = {"aws_access_key_id": key_id, "aws_secret_access_key": secret}
    return boto3.client(
        "bedrock-runtime",
        region_name=region,
        endpoint_url=endpoint_url or None,
        config=Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"max_attempts": 1, "mode": "standard"},  # the LLM agent retries, before the first token
        ),
        **credentials,
    )


class BedrockConverse(Provider):
    def client(self) -> Any:
        config = self.config
        return _client(
            settings.BROOK_LLM_REGION, config.base_url, config.api_key, config.connect_timeout, config.idle_timeout
        )

    def _request(self, turns: Sequence[ChatTurn], tools: Sequence[Tool]) -> dict[str, Any]:
        config = self.config
        system, messages = _messages(turns)
        inference: dict[str, Any] = {"maxTokens": config.max_tokens}
        if config.temperature is not None and not config.thinking_budget:
            inference["temperature"] = config.temperature
        request: dict[str, Any] = {"modelId": config.model, "messages": messages, "inferenceConfig": inference}
        if system:
            request["system"] = system
        if tools:
            request["toolConfig"] = {
                "tools": [
                    {"toolSpec": {"name": t.name, "description": t.description, "inputSchema": {"json": t.parameters}}}
                    for t in tools
                ]
            }
        if config.thinking_budget:
            request["additionalModelRequestFields"] = {
                "thinking": {"type": "enabled", "budget_tokens": config.thinking_budget}
            }
        return request

    async def stream(self, turns: Sequence[ChatTurn], tools: Sequence[Tool], sink: Sink) -> ModelCall:
        config = self.config
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        holder: dict[str, Any] = {}
        stopped = threading.Event()
        request = self._request(turns, tools)

        def read() -> None:
            """Worker thread: open the stream and pass each event (or the failure) to the loop."""
            try:
                response = self.client().converse_stream(**request)
                holder["stream"] = response["stream"]
                for event in response["stream"]:
                    if stopped.is_set():
                        response["stream"].close()
                        return
                    loop.call_soon_threadsafe(queue.put_nowait, ("event", event))
                loop.call_soon_threadsafe(queue.put_nowait, ("end", None))
            except Exception as error:
                loop.call_soon_threadsafe(queue.put_nowait, ("error", error))

        threading.Thread(target=read, name="bedrock-stream", daemon=True).start()
        result = ModelCall()
        deltas = Deltas(sink, starts_in_reasoning=config.reasoning_starts_open)
        tool_uses: dict[int, dict[str, Any]] = {}
        thinking: dict[int, dict[str, Any]] = {}

        try:
            async with asyncio.timeout(config.first_token_timeout) as first_token:
                while True:
                    kind, item = await queue.get()
                    if kind == "end":
                        break
                    if kind == "error":
                        raise item
                    if "contentBlockStart" in item:
                        start = item["contentBlockStart"]
                        tool_use = start.get("start", {}).get("toolUse")
                        if tool_use:
                            tool_uses[start["contentBlockIndex"]] = {**tool_use, "input": []}
                    elif "contentBlockDelta" in item:
                        first_token.reschedule(None)
                        block = item["contentBlockDelta"]
                        index, delta = block["contentBlockIndex"], block["delta"]
                        if "text" in delta:
                            await deltas.add_text(delta["text"])
                        elif "reasoningContent" in delta:
                            part = delta["reasoningContent"]
                            entry = thinking.setdefault(index, {"text": [], "signature": ""})
                            if part.get("text"):
                                entry["text"].append(part["text"])
                                await deltas.add_reasoning(part["text"])
                            entry["signature"] += part.get("signature", "")
                        elif "toolUse" in delta:
                            tool_uses[index]["input"].append(delta["toolUse"].get("input", ""))
                    elif "metadata" in item:
                        usage = item["metadata"].get("usage", {})
                        result.prompt_tokens = usage.get("inputTokens", 0)
                        result.completion_tokens = usage.get("outputTokens", 0)
            await deltas.finish(result)
        except TimeoutError:
            raise timed_out() from None
        except asyncio.CancelledError:
            stopped.set()
            stream = holder.get("stream")
            if stream is not None:
                await asyncio.to_thread(stream.close)  # closes the HTTP connection under the reading thread
            raise
        except Exception as error:
            raise translate_error(error) from None
        for index in sorted(tool_uses):
            use = tool_uses[index]
            try:
                arguments = json.loads("".join(use["input"]) or "{}")
            except json.JSONDecodeError:
                raise malformed() from None
            result.tool_calls.append(ToolCall(id=use["toolUseId"], name=use["name"], arguments=arguments))
        if thinking:
            result.extra["reasoning_blocks"] = [
                {"reasoningContent": {"reasoningText": {"text": "".join(t["text"]), "signature": t["signature"]}}}
                for _, t in sorted(thinking.items())
            ]
        return result

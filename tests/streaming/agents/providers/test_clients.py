"""SDK clients are made once per configuration and event loop, so model calls reuse their connections."""

from __future__ import annotations

import asyncio

from streaming.agents.providers.anthropic_messages import AnthropicMessages
from streaming.agents.providers.base import ProviderConfig
from streaming.agents.providers.openai_compat import OpenAICompatible


def test_one_client_per_configuration_and_loop() -> None:
    first = ProviderConfig(provider="openai", model="m", base_url="http://127.0.0.1:1/v1", api_key="k1")
    other_key = ProviderConfig(provider="openai", model="m", base_url="http://127.0.0.1:1/v1", api_key="k2")

    async def clients() -> tuple[object, ...]:
        return (
            OpenAICompatible(first).client(),
            OpenAICompatible(first).client(),
            OpenAICompatible(other_key).client(),
            AnthropicMessages(first).client(),
        )

    a, b, c, d = asyncio.run(clients())
    (e, *_) = asyncio.run(clients())

    assert a is b
    assert a is not c and a is not d
    assert a is not e  # another loop, another client

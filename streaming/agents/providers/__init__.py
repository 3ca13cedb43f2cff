"""Model providers and how a tenant's provider configuration is resolved (docs/providers.md).

A tenant's ``llm_*`` fields win; blank ones fall back to the process-wide ``BROOK_LLM_*`` settings. API keys never
live in the database: a tenant names a secret (``llm_api_key_secret``) that the environment holds as
``BROOK_SECRET_<NAME>``; the process default is ``BROOK_LLM_API_KEY`` (or ``BROOK_LLM_API_KEY_FILE``).
"""

from __future__ import annotations

import os

from django.conf import settings

from core.errors import ErrorCode
from streaming.agents.providers.anthropic_messages import AnthropicMessages
from streaming.agents.providers.base import Provider, ProviderConfig, ProviderError
from streaming.agents.providers.bedrock import BedrockConverse
from streaming.agents.providers.openai_compat import OpenAICompatible
from tenants.models import Tenant

PROVIDERS: dict[str, type[Provider]] = {
    "openai": OpenAICompatible,
    "anthropic": AnthropicMessages,
    "bedrock": BedrockConverse,
}


def read_secret(name: str) -> str:
    """The secret ``name`` from the environment (``BROOK_SECRET_<NAME>``); a missing one is a configuration error."""
    value = os.environ.get(f"BROOK_SECRET_{name.upper()}", "")
    if not value:
        raise ProviderError(ErrorCode.PROVIDER_NOT_CONFIGURED, "The assistant's model credentials are not set up.")
    return value


def provider_config(tenant: Tenant) -> ProviderConfig:
    provider = tenant.llm_provider or settings.BROOK_LLM_PROVIDER
    model = tenant.llm_model or settings.BROOK_LLM_MODEL
    if provider not in PROVIDERS or not model:
        raise ProviderError(ErrorCode.PROVIDER_NOT_CONFIGURED, "The assistant's model is not set up.")
    api_key = read_secret(tenant.llm_api_key_secret) if tenant.llm_api_key_secret else settings.BROOK_LLM_API_KEY
    return ProviderConfig(
        provider=provider,
        model=model,
        base_url=tenant.llm_base_url or settings.BROOK_LLM_BASE_URL,
        api_key=api_key,
        system_prompt=tenant.llm_system_prompt,
        temperature=tenant.llm_temperature,
        max_tokens=tenant.llm_max_tokens,
        connect_timeout=settings.BROOK_LLM_CONNECT_TIMEOUT,
        first_token_timeout=settings.BROOK_LLM_FIRST_TOKEN_TIMEOUT,
        idle_timeout=settings.BROOK_LLM_IDLE_TIMEOUT,
        reasoning_starts_open=tenant.llm_reasoning_starts_open,
        thinking_budget=tenant.llm_thinking_budget,
    )


def provider_for(config: ProviderConfig) -> Provider:
    return PROVIDERS[config.provider](config)

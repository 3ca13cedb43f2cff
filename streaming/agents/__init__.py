"""Agents Brook can run for a tenant; ``agent_for`` picks the tenant's (docs/architecture.md)."""

from __future__ import annotations

from streaming.agents.base import Agent, Emitter, StepScope, Turn, Usage
from streaming.agents.demo import DemoAgent
from tenants.models import Tenant


def agent_for(tenant: Tenant) -> Agent:
    """The agent that answers for ``tenant``; raises LookupError for a name no agent has."""
    if tenant.agent == DemoAgent.name:
        return DemoAgent()
    if tenant.agent == "llm":
        from streaming.agents.llm import LlmAgent  # imports the providers, which import this package's base

        return LlmAgent(tenant)
    raise LookupError(f"Tenant {tenant.pk} names unknown agent {tenant.agent!r}")


__all__ = ["Agent", "Emitter", "StepScope", "Turn", "Usage", "agent_for"]

"""Agents Brook can run for a tenant; ``agent_for`` picks the tenant's (docs/architecture.md)."""

from __future__ import annotations

from streaming.agents.base import Agent, Emitter, StepScope, Turn, Usage
from streaming.agents.demo import DemoAgent
from tenants.models import Tenant

AGENTS: dict[str, type[Agent]] = {DemoAgent.name: DemoAgent}


def agent_for(tenant: Tenant) -> Agent:
    """The agent that answers for ``tenant``; raises LookupError for a name no agent has."""
    try:
        return AGENTS[tenant.agent]()
    except KeyError:
        raise LookupError(f"Tenant {tenant.pk} names unknown agent {tenant.agent!r}") from None


__all__ = ["AGENTS", "Agent", "Emitter", "StepScope", "Turn", "Usage", "agent_for"]

"""Which agent answers for a tenant: a registry of agent factories by the name in ``Tenant.agent``
(docs/architecture.md, "Agents").

``agent_for(tenant)`` builds a fresh agent for each reply. ``registered(name, factory)`` adds one for the length of
a block (tests give tenants scripted agents through the ``agents`` fixture of tests/conftest.py, never by patching).
A name no factory has is a ``LookupError``, which the runner records as the reply's ``AGENT_ERROR``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from streaming.agents.base import Agent
from streaming.agents.demo import DemoAgent
from streaming.agents.llm import LlmAgent
from tenants.models import Tenant

AgentFactory = Callable[[Tenant], Agent]

_factories: dict[str, AgentFactory] = {
    DemoAgent.name: lambda tenant: DemoAgent(),
    LlmAgent.name: LlmAgent,
}


def agent_for(tenant: Tenant) -> Agent:
    """The agent that answers for ``tenant``; raises LookupError for a name no agent has."""
    factory = _factories.get(tenant.agent)
    if factory is None:
        raise LookupError(f"Tenant {tenant.pk} names unknown agent {tenant.agent!r}")
    return factory(tenant)


@contextmanager
def registered(name: str, factory: AgentFactory) -> Iterator[None]:
    """Make ``name`` answer with ``factory`` while the block runs (a name already taken is refused)."""
    if name in _factories:
        raise ValueError(f"An agent named {name!r} is already registered")
    _factories[name] = factory
    try:
        yield
    finally:
        del _factories[name]

"""Which agent answers for a tenant: a registry of agent factories by the name in ``Tenant.agent``
(docs/architecture.md, "Agents").

``agent_for(tenant)`` builds a fresh agent for each reply: Brook's own (``demo``, ``llm``) or an in-process agent that
``BROOK_AGENTS`` names (``configured_factory``; checked at start-up by ``check_configured``). A tenant whose agent is
``external`` has none here: its own orchestrator claims its replies (docs/agents.md). ``registered(name, factory)``
adds one for the length of a block (tests give tenants scripted agents through the ``agents`` fixture of
tests/conftest.py, never by patching).
A name no factory has is a ``LookupError``, which the runner records as the reply's ``AGENT_ERROR``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from streaming.agents.base import Agent
from streaming.agents.demo import DemoAgent
from streaming.agents.http_agent import HttpAgent
from streaming.agents.llm import LlmAgent
from streaming.agents.sync import SyncAgent
from tenants.models import Tenant

AgentFactory = Callable[[Tenant], Agent]

_factories: dict[str, AgentFactory] = {
    DemoAgent.name: lambda tenant: DemoAgent(),
    LlmAgent.name: LlmAgent,
    HttpAgent.name: HttpAgent,
}


@functools.cache
def configured_factory(path: str) -> AgentFactory:
    """The factory for a ``BROOK_AGENTS`` entry: ``package.module.SomeAgent`` (an ``Agent`` subclass, made with no
    arguments for each reply) or ``sync:package.module.function`` (a blocking agent, run by ``SyncAgent``).
    Raises ImproperlyConfigured when the path does not import or is not of that kind."""
    target = path.removeprefix("sync:")
    try:
        found = import_string(target.replace(":", "."))
    except ImportError as error:
        raise ImproperlyConfigured(f"BROOK_AGENTS: {path!r} does not import ({error}).") from None
    if path.startswith("sync:"):
        if not callable(found):
            raise ImproperlyConfigured(f"BROOK_AGENTS: {path!r} is not a function.")
        return lambda tenant: SyncAgent(found)
    if not (isinstance(found, type) and issubclass(found, Agent)):
        raise ImproperlyConfigured(f"BROOK_AGENTS: {path!r} is not a subclass of streaming.agents.base.Agent.")
    return lambda tenant: found()


def check_configured() -> None:
    """Import every agent ``BROOK_AGENTS`` names, so a bad entry stops the start instead of failing replies."""
    for path in settings.BROOK_AGENTS.values():
        configured_factory(path)


def agent_for(tenant: Tenant) -> Agent:
    """The agent that answers for ``tenant``; raises LookupError for a name no agent has."""
    factory = _factories.get(tenant.agent)
    if factory is None and tenant.agent in settings.BROOK_AGENTS:
        factory = configured_factory(settings.BROOK_AGENTS[tenant.agent])
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

"""Thought-step visibility per tenant: what of the assistant's work the widget may see (docs/security.md).

``full``: everything. ``steps``: steps and tool calls, never the model's raw reasoning. ``hidden``: only the answer.

Enforced twice, both on the server. When a reply is written, the recorder drops what the tenant's setting hides, so
it is never stored for the widget (``LogRecorder``). When anything is read (history, polling, SSE, WebSocket), what
the tenant's *current* setting hides is removed again, so tightening the setting also covers replies written before.
Removed events leave their ``seq`` unused: clients resume by the last seq they got, never by counting.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from chat.events import TERMINAL_TYPES, EventType, LoggedEvent
from tenants.models import ThoughtVisibility

_STEP_TYPES = frozenset({EventType.STEP_STARTED, EventType.STEP_COMPLETED, EventType.TOOL_CALL, EventType.TOOL_RESULT})


def shows_reasoning(policy: str) -> bool:
    return policy == ThoughtVisibility.FULL


def shows_steps(policy: str) -> bool:
    return policy != ThoughtVisibility.HIDDEN


def redact_event(event: LoggedEvent, policy: str) -> LoggedEvent | None:
    """The event as ``policy`` lets the widget see it, or None if it may not see it at all."""
    if policy == ThoughtVisibility.FULL:
        return event
    if event.type == EventType.REASONING_DELTA:
        return None
    if event.type in _STEP_TYPES and not shows_steps(policy):
        return None
    if event.type in TERMINAL_TYPES and event.data.get("reasoning"):
        return replace(event, data={**event.data, "reasoning": ""})
    return event


def redact_events(events: list[LoggedEvent], policy: str) -> list[LoggedEvent]:
    return [shown for event in events if (shown := redact_event(event, policy)) is not None]


def redact_message(body: dict[str, Any], policy: str) -> dict[str, Any]:
    """A serialized message as ``policy`` lets the widget see it."""
    if not shows_reasoning(policy):
        body["reasoning"] = ""
    if not shows_steps(policy):
        body["steps"] = []
    return body

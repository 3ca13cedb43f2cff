"""A blocking agent of the shape Brook's ``sync:`` adapter runs in-process (docs/agents.md, "In-process Python
agents"): one call that reports its progress through a callback and returns its result.

    BROOK_AGENTS=legacy=sync:examples.python_agents.legacy_agent.process_query
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def process_query(message: str, context: dict[str, Any], progress_callback: Callable[..., None]) -> dict[str, Any]:
    """Classify the question, "look up" an answer, and say it; each stage is reported as it completes."""
    intent = "question" if message.rstrip().endswith("?") else "statement"
    progress_callback("intent_parsed", {"intent": intent, "earlier_turns": len(context["history"])})
    words = len(message.split())
    progress_callback("insight_generated", f"{words} words")
    return {"answer": f"That was a {intent} of {words} words.", "intent": intent}

"""Logs as one JSON object per line, carrying the ids of the reply being worked on (docs/operations.md,
"Environment variables": ``LOG_FORMAT``).

``log_context(message_id=..., tenant_id=...)`` binds ids for the current task (contextvars: each asyncio task and
thread sees its own). ``ContextFilter`` copies them onto each record as it is logged (in the task that logs it), and
``JsonFormatter`` writes them out, so one reply's lines can be found across workers.
"""

from __future__ import annotations

import contextvars
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

_context: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("brook_log_context", default={})  # noqa: B039

# Ids a caller may also pass with ``extra=``.
CONTEXT_FIELDS = ("message_id", "session_id", "tenant_id")


@contextmanager
def log_context(**ids: Any) -> Iterator[None]:
    """Bind ``ids`` to every record logged in this task until the block ends."""
    token = _context.set({**_context.get(), **{name: str(value) for name, value in ids.items() if value is not None}})
    try:
        yield
    finally:
        _context.reset(token)


class ContextFilter(logging.Filter):
    """Stamp the ids bound by ``log_context`` on a record, where ``extra=`` did not already set them."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _context.get().items():
            if getattr(record, name, None) is None:
                setattr(record, name, value)
        return True


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", "message_id"?, "session_id"?, "tenant_id"?, "exc"?}`` per line."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = str(value)
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)

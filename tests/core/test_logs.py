"""JSON log lines carry the ids of the reply being worked on."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest
from rest_framework.test import APIClient

from chat.models import Message, Role
from core.logs import ContextFilter, JsonFormatter, log_context
from tests.conftest import SessionInfo


def record(message: str, **extra: object) -> logging.LogRecord:
    """A record as a handler with Brook's filter sees it when it is logged."""
    made = logging.LogRecord("brook.test", logging.WARNING, __file__, 1, message, None, None)
    made.__dict__.update(extra)
    ContextFilter().filter(made)
    return made


def test_a_line_is_one_json_object_with_level_logger_and_message() -> None:
    line = json.loads(JsonFormatter().format(record("Reply took 3 s")))

    assert (line["level"], line["logger"], line["message"]) == ("WARNING", "brook.test", "Reply took 3 s")
    assert line["ts"].endswith("+00:00")
    assert "message_id" not in line


def test_ids_bound_for_a_reply_appear_on_every_line_inside_and_none_after() -> None:
    formatter = JsonFormatter()

    with log_context(message_id="m-1", tenant_id=7, session_id=None):
        inside = json.loads(formatter.format(record("inside")))
        with log_context(session_id="s-1"):
            nested = json.loads(formatter.format(record("nested")))
    after = json.loads(formatter.format(record("after")))

    assert (inside["message_id"], inside["tenant_id"]) == ("m-1", "7") and "session_id" not in inside
    assert (nested["message_id"], nested["session_id"]) == ("m-1", "s-1")
    assert "message_id" not in after


def test_ids_passed_with_extra_and_exceptions_are_kept() -> None:
    try:
        raise ValueError("upstream said no")
    except ValueError:
        failed = record("Agent failed", tenant_id=3)
        failed.exc_info = sys.exc_info()

    line = json.loads(JsonFormatter().format(failed))

    assert line["tenant_id"] == "3"
    assert "ValueError: upstream said no" in line["exc"]


@pytest.mark.django_db(transaction=True)
def test_a_runner_log_line_names_its_reply_and_tenant(api: APIClient, session: SessionInfo) -> None:
    lines = io.StringIO()
    handler = logging.StreamHandler(lines)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter())
    runner_logger = logging.getLogger("streaming.run.runner")
    runner_logger.addHandler(handler)
    try:
        api.post(session.messages_url, {"content": "Hello"}, format="json", **session.auth)
    finally:
        runner_logger.removeHandler(handler)

    reply = Message.objects.get(role=Role.ASSISTANT)
    logged = [json.loads(line) for line in lines.getvalue().splitlines()]
    ended = [line for line in logged if line["message"].startswith(f"Reply {reply.id}")]
    assert ended
    assert ended[0]["message_id"] == str(reply.id)
    assert ended[0]["session_id"] == str(session.id)
    assert ended[0]["tenant_id"] == str(reply.session.tenant_id)

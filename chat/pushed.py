"""Events a tenant's own agent pushes into a reply (docs/agents.md, "Pushing events"): their shapes, checked before
anything is stored. Pure code: no database.

A push is ``{"events": [{"seq": 1, "type": "text.delta", "data": {"delta": "Hi"}}, ...]}``: the agent's own
sequence numbers (1, 2, 3, … per reply) and Brook's own vocabulary (docs/events.md), less what only Brook writes
(``message.started``, ``status``), plus ``usage``. A malformed batch is refused whole with 400
``AGENT_EVENT_INVALID``, naming the first bad event by its position.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from chat.events import EventType
from chat.models import StepKind, StepStatus
from core.errors import ApiError, ErrorCode

# At most this many events in one push (a bigger batch is 413 PAYLOAD_TOO_LARGE).
MAX_EVENTS = 500
USAGE = "usage"
TERMINAL = frozenset({EventType.MESSAGE_COMPLETED, EventType.MESSAGE_FAILED, EventType.MESSAGE_CANCELLED})
PUSHABLE = frozenset(
    {
        EventType.STEP_STARTED,
        EventType.STEP_COMPLETED,
        EventType.REASONING_DELTA,
        EventType.TEXT_DELTA,
        EventType.TOOL_CALL,
        EventType.TOOL_RESULT,
        USAGE,
        *TERMINAL,
    }
)


@dataclass(frozen=True, slots=True)
class Pushed:
    """One pushed event: the agent's ``seq``, a type from ``PUSHABLE`` and its checked ``data``."""

    seq: int
    type: str
    data: dict[str, Any]

    @property
    def is_terminal(self) -> bool:
        return self.type in TERMINAL


_V = TypeVar("_V")


class InvalidEvent(ValueError):
    """An event that is not in the vocabulary or not of its type's shape; the message says what is wrong."""


def _text(data: dict[str, Any], name: str, *, required: bool = True, limit: int = 100_000) -> str:
    value = data.get(name, None if required else "")
    if not isinstance(value, str) or (required and not value):
        raise InvalidEvent(f"{name} must be a{' non-empty' if required else ''} string")
    if len(value) > limit:
        raise InvalidEvent(f"{name} is longer than {limit} characters")
    return _storable(value, name)


def _whole(data: dict[str, Any], name: str, *, required: bool = True) -> int | None:
    value = data.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**31:
        raise InvalidEvent(f"{name} must be a whole number from 0 to 2147483647")
    return value


def _storable(value: _V, name: str) -> _V:
    """``value`` if every string in it, keys included, stores as text in any database: no null characters, no lone
    surrogates (PostgreSQL's JSON refuses both)."""
    pending: list[Any] = [value]
    while pending:  # a loop, not recursion: the parser already bounds the depth, this must not add a limit of its own
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, str):
            if "\x00" in item:
                raise InvalidEvent(f"{name} contains a null character")
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidEvent(f"{name} is not valid Unicode") from None
    return value


def _object(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, dict):
        raise InvalidEvent(f"{name} must be an object")
    return _storable(value, name)


def _check(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """The event's data, keeping only the fields its type has, each checked."""
    if kind == EventType.STEP_STARTED:
        step_kind = data.get("kind")
        if step_kind not in StepKind.values:
            raise InvalidEvent(f"kind must be one of: {', '.join(StepKind.values)}")
        return {
            "index": _whole(data, "index"),
            "kind": step_kind,
            "title": _text(data, "title", limit=200),
            "detail": _text(data, "detail", required=False),
            "metadata": _object(data, "metadata"),
        }
    if kind == EventType.STEP_COMPLETED:
        status = data.get("status", StepStatus.COMPLETED)
        if status not in {StepStatus.COMPLETED, StepStatus.FAILED}:
            raise InvalidEvent("status must be completed or failed")
        checked: dict[str, Any] = {
            "index": _whole(data, "index"),
            "status": status,
            "metadata": _object(data, "metadata"),
        }
        if "detail" in data:
            checked["detail"] = _text(data, "detail", required=False)
        return checked
    if kind in {EventType.TEXT_DELTA, EventType.REASONING_DELTA}:
        return {"delta": _text(data, "delta")}
    if kind == EventType.TOOL_CALL:
        return {
            "call_id": _text(data, "call_id", limit=200),
            "name": _text(data, "name", limit=200),
            "arguments": _object(data, "arguments"),
        }
    if kind == EventType.TOOL_RESULT:
        is_error = data.get("is_error", False)
        if not isinstance(is_error, bool):
            raise InvalidEvent("is_error must be true or false")
        if "result" not in data:
            raise InvalidEvent("result is required (any JSON value)")
        return {
            "call_id": _text(data, "call_id", limit=200),
            "result": _storable(data["result"], "result"),
            "is_error": is_error,
        }
    if kind == USAGE:
        return {
            "model": _text(data, "model", required=False, limit=200),
            "prompt_tokens": _whole(data, "prompt_tokens", required=False),
            "completion_tokens": _whole(data, "completion_tokens", required=False),
            "reasoning_tokens": _whole(data, "reasoning_tokens", required=False),
        }
    if kind == EventType.MESSAGE_FAILED:
        return {"message": _text(data, "message", required=False, limit=500)}
    if kind == EventType.MESSAGE_CANCELLED:
        return {"reason": _text(data, "reason", required=False, limit=500)}
    return {}  # message.completed: everything it says is already in the log


def parse_push(body: Any) -> list[Pushed]:
    """The events of a push body, checked; 400 ``AGENT_EVENT_INVALID`` or 413 ``PAYLOAD_TOO_LARGE`` otherwise."""
    events = body.get("events") if isinstance(body, dict) else None
    if not isinstance(events, list) or not events:
        raise ApiError(ErrorCode.AGENT_EVENT_INVALID, 'The body must be {"events": [...]} with at least one event.')
    if len(events) > MAX_EVENTS:
        raise ApiError(
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"A push carries at most {MAX_EVENTS} events; this one has {len(events)}. Split it.",
            status_code=413,
            details={"max_events": MAX_EVENTS},
        )
    parsed = []
    for position, raw in enumerate(events):
        try:
            parsed.append(parse_event(raw))
        except InvalidEvent as bad:
            raise ApiError(
                ErrorCode.AGENT_EVENT_INVALID, f"events[{position}]: {bad}.", details={"position": position}
            ) from None
    return parsed


def parse_event(raw: Any, *, seq_required: bool = True) -> Pushed:
    """One event, ``{"seq", "type", "data"}``, checked; raises ``InvalidEvent``. An agent that streams its answer to
    Brook (the ``http`` agent kind) may leave ``seq`` out: its order is the stream's (``seq`` is then 0)."""
    if not isinstance(raw, dict):
        raise InvalidEvent("an event must be an object")
    seq = raw.get("seq")
    if seq is None and not seq_required:
        seq = 0
    elif not isinstance(seq, int) or isinstance(seq, bool) or not 1 <= seq < 2**31:
        raise InvalidEvent("seq must be a whole number ≥ 1")
    kind = raw.get("type")
    if kind not in PUSHABLE:
        raise InvalidEvent(f"type must be one of: {', '.join(sorted(PUSHABLE))}")
    data = raw.get("data", {})
    if not isinstance(data, dict):
        raise InvalidEvent("data must be an object")
    return Pushed(seq=seq, type=str(kind), data=_check(str(kind), data))

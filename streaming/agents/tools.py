"""Tools an LLM agent may call: registered Python callables with a JSON-schema description (docs/providers.md).

Two safe built-ins ship: ``current_time`` and ``calculator`` (arithmetic only, parsed with ``ast``, never ``eval``).
A tool gets its arguments as a dict and returns something JSON-serializable; raising ``ToolError`` reports a failure
to the model as the tool's result.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class ToolError(Exception):
    """The tool could not do what was asked; the message goes back to the model."""


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    run: Callable[[dict[str, Any]], Any]


def _current_time(arguments: dict[str, Any]) -> dict[str, str]:
    zone_name = str(arguments.get("timezone") or "UTC")
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ToolError(f"Unknown time zone {zone_name!r}") from None
    now = datetime.now(UTC).astimezone(zone)
    return {"timezone": zone_name, "iso": now.isoformat(timespec="seconds"), "weekday": now.strftime("%A")}


_OPERATORS: dict[type, Callable[..., Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
}


def _evaluate(node: ast.AST) -> float | int:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and (abs(right) > 100 or abs(left) > 10**6):
            raise ToolError("Exponent too large")
        return _OPERATORS[type(node.op)](left, right)  # type: ignore[no-any-return]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPERATORS:
        return _OPERATORS[type(node.op)](_evaluate(node.operand))  # type: ignore[no-any-return]
    raise ToolError("Only numbers and + - * / // % ** and parentheses are allowed")


def _calculator(arguments: dict[str, Any]) -> dict[str, Any]:
    expression = str(arguments.get("expression", ""))
    if not expression or len(expression) > 200:
        raise ToolError("Give an arithmetic expression of at most 200 characters")
    try:
        value = _evaluate(ast.parse(expression, mode="eval"))
    except SyntaxError:
        raise ToolError("Not an arithmetic expression") from None
    except (ZeroDivisionError, OverflowError) as error:
        raise ToolError(str(error)) from None
    return {"expression": expression, "value": value}


TOOLS: dict[str, Tool] = {
    tool.name: tool
    for tool in (
        Tool(
            name="current_time",
            description="The current date and time, in a given IANA time zone (default UTC).",
            parameters={
                "type": "object",
                "properties": {"timezone": {"type": "string", "description": "e.g. Europe/Paris"}},
            },
            run=_current_time,
        ),
        Tool(
            name="calculator",
            description="Evaluate an arithmetic expression: numbers, + - * / // % ** and parentheses.",
            parameters={
                "type": "object",
                "properties": {"expression": {"type": "string", "description": "e.g. (3 + 4) * 2"}},
                "required": ["expression"],
            },
            run=_calculator,
        ),
    )
}


def run_tool(name: str, arguments: dict[str, Any]) -> tuple[Any, bool]:
    """(result, is_error): an unknown tool or a ToolError is an error result, never an exception."""
    tool = TOOLS.get(name)
    if tool is None:
        return {"error": f"No tool named {name!r}"}, True
    try:
        return tool.run(arguments), False
    except ToolError as error:
        return {"error": str(error)}, True

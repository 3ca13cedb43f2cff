"""The built-in tools: safe arithmetic and the current time; failures are results, never exceptions."""

from __future__ import annotations

import pytest

from streaming.agents.tools import run_tool


@pytest.mark.parametrize(
    ("expression", "value"), [("1 + 2 * 3", 7), ("(1 + 2) * 3", 9), ("-2 ** 3", -8), ("7 // 2", 3), ("1 / 4", 0.25)]
)
def test_the_calculator_does_arithmetic(expression: str, value: float) -> None:
    assert run_tool("calculator", {"expression": expression}) == ({"expression": expression, "value": value}, False)


@pytest.mark.parametrize(
    "expression",
    ["__import__('os').system('true')", "x + 1", "len('abc')", "1 / 0", "9 ** 9 ** 9", "", "1 +", "True + 1"],
)
def test_the_calculator_refuses_anything_else(expression: str) -> None:
    result, is_error = run_tool("calculator", {"expression": expression})

    assert is_error and "error" in result


def test_the_current_time_in_a_time_zone() -> None:
    result, is_error = run_tool("current_time", {"timezone": "Europe/Paris"})

    assert not is_error
    assert result["timezone"] == "Europe/Paris" and result["iso"][-6:] in {"+01:00", "+02:00"}


def test_unknown_zones_and_tools_are_error_results() -> None:
    assert run_tool("current_time", {"timezone": "Mars/Olympus"})[1] is True
    assert run_tool("rm_rf", {}) == ({"error": "No tool named 'rm_rf'"}, True)

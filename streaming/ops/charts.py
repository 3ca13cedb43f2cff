"""Small charts for admin pages as inline SVG, drawn on the server (docs/metrics.md, "The admin dashboard"): no script,
no library, nothing fetched. Axes with y ticks, sparse x labels, a legend, a tooltip (``<title>``) on every point or
bar, and gaps where a series has no value."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 30, 26  # room for y labels, the legend and x labels
MAX_X_LABELS = 8


@dataclass(frozen=True, slots=True)
class Series:
    """One line (or the bars) of a chart: a value per x position, None where there is none."""

    name: str
    values: Sequence[float | None]
    color: str
    dashed: bool = False  # so that a line on top lets one it hides show through


def number(value: float) -> str:
    """A value as a chart shows it: whole numbers plain, others with at most two decimals."""
    return f"{value:.2f}".rstrip("0").rstrip(".") if value != int(value) else str(int(value))


def _axis_top(highest: float, *, whole: bool) -> tuple[float, float]:
    """A round top for the y axis at or above ``highest`` (and 1), and the step between its (at most five) ticks."""
    highest = max(highest, 1.0)
    raw = highest / 4
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if raw <= m * magnitude * (1 + 1e-9))
    if whole:
        step = max(1.0, math.ceil(step))
    return step * max(1, math.ceil(highest / step - 1e-9)), step


def _join(parts: Iterable[SafeString]) -> SafeString:
    return format_html_join("", "{}", ((part,) for part in parts))


def chart(
    *,
    key: str,
    label: str,
    x_labels: Sequence[str],
    x_titles: Sequence[str],
    series: Sequence[Series],
    unit: str = "",
    kind: Literal["line", "bar"] = "line",
    whole: bool = False,
) -> SafeString:
    """An SVG chart of ``series`` over ``len(x_labels)`` positions; ``x_titles`` name each position in tooltips,
    ``unit`` follows each value, ``whole`` keeps y ticks whole. ``key`` becomes its ``data-chart`` attribute and
    ``label`` its accessible name. Every text is escaped."""
    slots = len(x_labels)
    plot_width, plot_height = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    present = [v for s in series for v in s.values if v is not None]
    top, step = _axis_top(max(present, default=0.0), whole=whole)
    slot = plot_width / max(slots, 1)

    def x(i: int) -> float:
        return LEFT + slot * (i + 0.5)

    def y(value: float) -> float:
        return TOP + plot_height * (1 - value / top)

    parts: list[SafeString] = []
    for n in range(round(top / step) + 1):
        tick = n * step
        parts.append(
            format_html(
                '<line class="grid" x1="{}" x2="{}" y1="{}" y2="{}" stroke="currentColor" stroke-opacity="{}"/>'
                '<text x="{}" y="{}" text-anchor="end" dominant-baseline="middle">{}{}</text>',
                LEFT,
                WIDTH - RIGHT,
                f"{y(tick):.1f}",
                f"{y(tick):.1f}",
                "0.6" if n == 0 else "0.15",
                LEFT - 6,
                f"{y(tick):.1f}",
                number(tick),
                unit,
            )
        )
    every = max(1, math.ceil(slots / MAX_X_LABELS))
    parts.extend(
        format_html(
            '<text class="x-label" x="{}" y="{}" text-anchor="middle">{}</text>', f"{x(i):.1f}", HEIGHT - 8, text
        )
        for i, text in enumerate(x_labels)
        if i % every == 0
    )
    for s in series:
        if kind == "bar":
            parts.extend(_bars(s, x_titles, unit, x=x, y=y, width=slot * 0.7))
        else:
            parts.extend(_line(s, x_titles, unit, x=x, y=y))
    if not present:
        parts.append(
            format_html(
                '<text class="empty" x="{}" y="{}" text-anchor="middle">No data in this window</text>',
                LEFT + plot_width / 2,
                TOP + plot_height / 2,
            )
        )
    legend_x = LEFT
    for s in series:
        parts.append(
            format_html(
                '<g class="legend"><rect x="{}" y="8" width="10" height="10" fill="{}"/>'
                '<text x="{}" y="17">{}</text></g>',
                legend_x,
                s.color,
                legend_x + 14,
                s.name,
            )
        )
        legend_x += 14 + 7 * len(s.name) + 18
    return format_html(
        '<svg class="brook-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {} {}" width="{}" height="{}" '
        'role="img" aria-label="{}" data-chart="{}">{}</svg>',
        WIDTH,
        HEIGHT,
        WIDTH,
        HEIGHT,
        label,
        key,
        _join(parts),
    )


def _tooltip(s: Series, title: str, value: float, unit: str) -> str:
    return f"{s.name}, {title}: {number(value)}{unit}"


def _line(
    s: Series, titles: Sequence[str], unit: str, *, x: Callable[[int], float], y: Callable[[float], float]
) -> list[SafeString]:
    """A polyline for each run of consecutive values (a gap where there is none) and a dot with a tooltip each."""
    runs: list[list[tuple[int, float]]] = [[]]
    for i, value in enumerate(s.values):
        if value is None:
            runs.append([])
        else:
            runs[-1].append((i, value))
    parts = [
        format_html(
            '<polyline points="{}" fill="none" stroke="{}" stroke-width="2" stroke-linejoin="round"{}/>',
            " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in run),
            s.color,
            format_html(' stroke-dasharray="{}"', "6 4") if s.dashed else "",
        )
        for run in runs
        if len(run) > 1
    ]
    parts.extend(
        format_html(
            '<circle cx="{}" cy="{}" r="3" fill="{}"><title>{}</title></circle>',
            f"{x(i):.1f}",
            f"{y(v):.1f}",
            s.color,
            _tooltip(s, titles[i], v, unit),
        )
        for run in runs
        for i, v in run
    )
    return parts


def _bars(
    s: Series, titles: Sequence[str], unit: str, *, x: Callable[[int], float], y: Callable[[float], float], width: float
) -> list[SafeString]:
    return [
        format_html(
            '<rect class="bar" x="{}" y="{}" width="{}" height="{}" fill="{}"><title>{}</title></rect>',
            f"{x(i) - width / 2:.1f}",
            f"{y(v):.1f}",
            f"{width:.1f}",
            f"{y(0) - y(v):.1f}",
            s.color,
            _tooltip(s, titles[i], v, unit),
        )
        for i, v in enumerate(s.values)
        if v is not None
    ]

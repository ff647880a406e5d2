"""Bar charts as plain geometry, drawn by the templates as inline SVG.

Server-rendered SVG needs no script (the CSP allows none inline) and no charting
library: this module turns per-minute counts into rectangles, gridlines and
labels; colours come from CSS classes, and each bar carries a ``<title>`` that a
browser shows on hover. Pure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

LEFT = 40.0  # room for the y labels
BOTTOM = 18.0  # room for the x labels
TOP = 6.0


@dataclass(frozen=True, slots=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    css: str
    title: str


@dataclass(frozen=True, slots=True)
class Label:
    x: float
    y: float
    text: str


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    css: str
    counts: Sequence[int]


@dataclass(frozen=True, slots=True)
class Chart:
    title: str
    width: float
    height: float
    rects: tuple[Rect, ...]
    grid: tuple[Label, ...]  # a horizontal line at y, labelled with its count
    ticks: tuple[Label, ...]  # times along the bottom
    legend: tuple[tuple[str, str, int], ...]  # (name, css, total)
    total: int


def nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 5 x 10^k at or above ``value`` (at least 1): round axis tops."""
    if value <= 1:
        return 1
    power = int(10 ** math.floor(math.log10(value)))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power  # pragma: no cover


def stacked(
    title: str,
    minutes: Sequence[str],
    series: Sequence[Series],
    *,
    width: float = 720.0,
    height: float = 140.0,
    tick_every: int = 15,
    left: float = LEFT,
) -> Chart:
    """One bar per minute, the series stacked in order; ``minutes`` are ISO times.

    ``left`` leaves room for the count labels (0 for a sparkline without them).
    """
    n = max(len(minutes), 1)
    plot_w = width - left
    plot_h = height - BOTTOM - TOP
    totals = [sum(s.counts[i] for s in series) for i in range(len(minutes))]
    top = nice_ceiling(max(totals, default=0))
    slot = plot_w / n
    bar = max(slot - 1.0, 1.0)
    rects = []
    for i, minute in enumerate(minutes):
        base = TOP + plot_h
        clock = minute[11:16]
        for s in series:
            count = s.counts[i]
            if count <= 0:
                continue
            # At least a pixel: one failure next to thousands of successes must show.
            h = min(max(plot_h * count / top, 1.0), base - TOP)
            base -= h
            rects.append(
                Rect(
                    round(left + i * slot, 1),
                    round(base, 1),
                    round(bar, 1),
                    round(h, 1),
                    s.css,
                    f"{clock} UTC: {count} {s.name}",
                )
            )
    grid = tuple(
        Label(left, round(TOP + plot_h * (1 - frac), 1), f"{round(top * frac):g}")
        for frac in (0.0, 0.5, 1.0)
        if frac == 0.0 or top * frac == int(top * frac)
    )
    ticks = tuple(
        Label(round(left + i * slot, 1), height - 4, minute[11:16])
        for i, minute in enumerate(minutes)
        if i % tick_every == 0
    )
    legend = tuple((s.name, s.css, sum(s.counts)) for s in series)
    return Chart(title, width, height, tuple(rects), grid, ticks, legend, sum(t for t in totals))

"""Latency plots as inline SVG strings, so an HTML report is one self-contained file.

No plotting library: a histogram and a CDF are a few rectangles and a step line. The
x axis is logarithmic because voice latencies span decades (a 2 ms median next to an
800 ms budget) and the budget line must stay on the plot. Every text is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from switchboard.sim.results import LatencySummary

WIDTH = 560
HEIGHT = 250
_LEFT, _RIGHT, _TOP, _BOTTOM = 52, 16, 30, 40
_PLOT_W = WIDTH - _LEFT - _RIGHT
_PLOT_H = HEIGHT - _TOP - _BOTTOM
#: Values are clamped to this floor so a zero latency still has a place on a log axis.
_FLOOR_MS = 0.01

BUDGET_COLOR = "#dc2626"
#: Colours for the series of one plot, in order (TTFB, then TTC).
SERIES_COLORS = ("#2563eb", "#ea580c", "#059669", "#7c3aed")


def histogram_svg(summary: LatencySummary, *, budget_ms: float, title: str) -> str:
    """Bars of ``summary.buckets`` (upper bound ms, count) with the budget as a vertical line."""
    buckets = [(max(b, _FLOOR_MS), n) for b, n in summary.buckets]
    if not buckets or not any(n for _, n in buckets):
        return _empty(title)
    axis = _LogAxis([b for b, _ in buckets] + [_lower_edge(buckets)], budget_ms)
    top = max(n for _, n in buckets)
    parts = _frame(title, axis)
    parts += _y_ticks([(0, "0"), (top / 2, _fmt_count(top / 2)), (top, _fmt_count(top))], top)
    lower = _lower_edge(buckets)
    bars = []
    for bound, count in buckets:
        x0, x1 = axis.x(lower), axis.x(bound)
        lower = bound
        if count <= 0:
            continue
        h = _PLOT_H * count / top
        bars.append(
            f'<rect x="{x0:.1f}" y="{_TOP + _PLOT_H - h:.1f}" width="{max(x1 - x0, 1.0):.1f}" '
            f'height="{h:.1f}"><title>&#8804; {escape(_fmt_ms(bound))} ms: {count}</title></rect>'
        )
    parts.append(
        f'<g fill="{SERIES_COLORS[0]}" fill-opacity="0.75" stroke="#fff" stroke-width="0.5">'
        f"{''.join(bars)}</g>"
    )
    parts += _budget(axis, budget_ms)
    parts.append("</svg>")
    return "".join(parts)


def cdf_svg(series: Sequence[tuple[str, LatencySummary]], *, budget_ms: float, title: str) -> str:
    """Step lines of each series' ``cdf`` points, p50/p90/p99 guides and the budget line."""
    drawn = [(name, s) for name, s in series if s.cdf]
    if not drawn:
        return _empty(title)
    axis = _LogAxis([max(v, _FLOOR_MS) for _, s in drawn for v, _ in s.cdf], budget_ms)
    parts = _frame(title, axis)
    parts += _y_ticks([(0.0, "0"), (0.5, "p50"), (0.9, "p90"), (0.99, "p99")], 1.0)
    for i, (name, summary) in enumerate(drawn):
        color = SERIES_COLORS[i % len(SERIES_COLORS)]
        first = max(summary.cdf[0][0], _FLOOR_MS)
        d = [f"M{axis.x(first):.1f},{_y(0.0, 1.0):.1f}"]
        for value, fraction in summary.cdf:
            d.append(f"H{axis.x(max(value, _FLOOR_MS)):.1f}V{_y(fraction, 1.0):.1f}")
        parts.append(
            f'<path d="{"".join(d)}" fill="none" stroke="{color}" stroke-width="2">'
            f"<title>{escape(name)}</title></path>"
        )
        lx = _LEFT + _PLOT_W - (len(drawn) - i) * 70
        parts.append(
            f'<rect x="{lx}" y="13" width="12" height="3" fill="{color}"/>'
            f'<text x="{lx + 16}" y="18" class="legend">{escape(name)}</text>'
        )
    parts += _budget(axis, budget_ms)
    parts.append("</svg>")
    return "".join(parts)


class _LogAxis:
    """A log10 x axis from a 1-2-5 tick at or below the data to one at or above it."""

    def __init__(self, values: Sequence[float], budget_ms: float) -> None:
        points = [v for v in values if v > 0]
        if budget_ms > 0:
            points.append(budget_ms)
        lo, hi = min(points), max(points)
        self.lo = _tick_at_or_below(lo)
        self.hi = _tick_at_or_above(hi * 1.05)
        if self.hi <= self.lo:
            self.hi = self.lo * 10
        self._span = math.log10(self.hi) - math.log10(self.lo)

    def x(self, value: float) -> float:
        v = min(max(value, self.lo), self.hi)
        return _LEFT + _PLOT_W * (math.log10(v) - math.log10(self.lo)) / self._span

    def ticks(self) -> list[float]:
        ticks = []
        t = self.lo
        while t <= self.hi * 1.0001:
            ticks.append(t)
            t = _next_tick(t)
        # Thin out to decades when the 1-2-5 ticks would crowd the axis.
        if len(ticks) > 10:
            ticks = [t for t in ticks if _mantissa(t) == 1] or ticks[:: len(ticks) // 8]
        return ticks


def _frame(title: str, axis: _LogAxis) -> list[str]:
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'class="plot" role="img" aria-label="{escape(title)}">',
        f'<text x="{_LEFT}" y="18" class="title">{escape(title)}</text>',
        f'<rect x="{_LEFT}" y="{_TOP}" width="{_PLOT_W}" height="{_PLOT_H}" class="area"/>',
    ]
    base = _TOP + _PLOT_H
    for t in axis.ticks():
        x = axis.x(t)
        parts.append(
            f'<line x1="{x:.1f}" y1="{_TOP}" x2="{x:.1f}" y2="{base}" class="grid"/>'
            f'<text x="{x:.1f}" y="{base + 15}" class="tick" text-anchor="middle">'
            f"{escape(_fmt_ms(t))}</text>"
        )
    parts.append(
        f'<text x="{_LEFT + _PLOT_W / 2:.1f}" y="{HEIGHT - 6}" class="axis" '
        'text-anchor="middle">milliseconds (log scale)</text>'
    )
    return parts


def _y_ticks(ticks: Sequence[tuple[float, str]], top: float) -> list[str]:
    parts = []
    for value, label in ticks:
        y = _y(value, top)
        parts.append(
            f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{_LEFT + _PLOT_W}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" class="tick" text-anchor="end">'
            f"{escape(label)}</text>"
        )
    return parts


def _budget(axis: _LogAxis, budget_ms: float) -> list[str]:
    if budget_ms <= 0:
        return []
    x = axis.x(budget_ms)
    anchor = "end" if x > _LEFT + _PLOT_W * 0.8 else "start"
    dx = -4 if anchor == "end" else 4
    return [
        f'<line x1="{x:.1f}" y1="{_TOP}" x2="{x:.1f}" y2="{_TOP + _PLOT_H}" '
        f'stroke="{BUDGET_COLOR}" stroke-width="2" stroke-dasharray="6 4" class="budget"/>',
        f'<text x="{x + dx:.1f}" y="{_TOP + 12}" fill="{BUDGET_COLOR}" class="tick" '
        f'text-anchor="{anchor}">budget {escape(_fmt_ms(budget_ms))} ms</text>',
    ]


def _empty(title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'class="plot" role="img" aria-label="{escape(title)}">'
        f'<text x="{_LEFT}" y="18" class="title">{escape(title)}</text>'
        f'<rect x="{_LEFT}" y="{_TOP}" width="{_PLOT_W}" height="{_PLOT_H}" class="area"/>'
        f'<text x="{_LEFT + _PLOT_W / 2}" y="{_TOP + _PLOT_H / 2}" class="axis" '
        'text-anchor="middle">no data</text></svg>'
    )


def _y(value: float, top: float) -> float:
    return _TOP + _PLOT_H - _PLOT_H * (value / top if top > 0 else 0.0)


def _lower_edge(buckets: Sequence[tuple[float, int]]) -> float:
    """Where the first bucket starts: one bucket width below its upper bound."""
    first = buckets[0][0]
    width = buckets[1][0] - first if len(buckets) > 1 else first * 0.2
    return max(first - width, first / 2, _FLOOR_MS)


def _mantissa(t: float) -> int:
    return round(t / 10.0 ** math.floor(math.log10(t) + 1e-9))


def _next_tick(t: float) -> float:
    decade = 10.0 ** math.floor(math.log10(t) + 1e-9)
    m = _mantissa(t)
    return decade * (2 if m == 1 else 5 if m == 2 else 10)


def _tick_at_or_below(v: float) -> float:
    decade = 10.0 ** math.floor(math.log10(v))
    for m in (5, 2, 1):
        if decade * m <= v * 1.0001:
            return decade * m
    return decade


def _tick_at_or_above(v: float) -> float:
    decade = 10.0 ** math.floor(math.log10(v))
    for m in (1, 2, 5, 10):
        if decade * m >= v * 0.9999:
            return decade * m
    return decade * 10


def _fmt_ms(v: float) -> str:
    if v >= 1000:
        return f"{v / 1000:g}k"
    if v >= 1:
        return f"{v:.0f}" if v == int(v) else f"{v:.1f}"
    return f"{v:.2g}"


def _fmt_count(v: float) -> str:
    return f"{v:.0f}" if v >= 10 or v == int(v) else f"{v:.1f}"

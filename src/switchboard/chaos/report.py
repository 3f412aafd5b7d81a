"""Rendering a chaos report: the terminal tables, the JSON file, the HTML page.

All three render what ``checker.check`` found and never judge again. The HTML page is
self-contained (inline CSS and one SVG timeline: every turn's TTFB against the faults,
drawn as bands from their start to their end), and every string that came from the run
is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from html import escape
from pathlib import Path

import msgspec
from rich import box
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table

from switchboard.atomic_file import write_atomically
from switchboard.chaos.run import ChaosReport

#: Colours of the fault bands, by kind.
FAULT_COLORS = {
    "kill": "#dc2626",
    "kill-mid-turn": "#b91c1c",
    "kill-after-reply": "#991b1b",
    "term": "#ea580c",
    "redis-restart": "#7c3aed",
    "redis-pause": "#a855f7",
    "hangup": "#0891b2",
    "haproxy-restart": "#ca8a04",
    "bus-stop": "#059669",
    "service-kill": "#db2777",
    "archive-stop": "#0d9488",
    "poison": "#4d7c0f",
    "oversized": "#9333ea",
    "kill-while-spilling": "#7f1d1d",
}


def write_json(report: ChaosReport, path: Path) -> None:
    _write(path, msgspec.json.format(msgspec.json.encode(report), indent=2))


def load_json(path: Path) -> ChaosReport:
    return msgspec.json.decode(path.read_bytes(), type=ChaosReport)


def write_html(report: ChaosReport, path: Path) -> None:
    _write(path, render_html(report).encode())


def _write(path: Path, data: bytes) -> None:
    write_atomically(path, data)


# --- terminal ------------------------------------------------------------------------


def figure_rows(report: ChaosReport) -> Iterator[tuple[str, str]]:
    f = report.findings
    yield "calls", f"{f.calls} ({f.turns_answered} turns answered)"
    yield "calls lost", str(f.calls_lost)
    yield "second greetings", str(f.second_greetings)
    yield "repeated questions", str(f.repeated_questions)
    yield "replies differing from control", str(f.replies_differing)
    yield "unanswered turns", str(f.unanswered_turns)
    shown = ", ".join(f"{k} {n}" for k, n in f.violations.items())
    yield "protocol violations", shown or "0"
    yield from event_rows(report)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} ms"


def event_rows(report: ChaosReport) -> Iterator[tuple[str, str]]:
    """The event pipeline's figures, when the run judged it."""
    e = report.events
    if e is None:
        return
    yield (
        "turns archived exactly once",
        f"{e.archived_once} of {e.answered_turns} answered (missing {e.not_archived}, "
        f"twice {e.archived_twice}; {e.archived_unanswered} archived, not seen answered)",
    )
    yield (
        "escalations",
        f"{e.escalations_decided} decided: {e.escalations_done} done, {e.escalations_failed} "
        f"failed, {e.escalations_pending} pending; handoffs heard {e.handoffs_heard} (twice "
        f"{e.handoffs_twice}, unexplained {e.handoffs_unexplained}); escalating calls not "
        f"decided {e.escalations_not_decided}",
    )
    poison = ", ".join(f"{g} {n}" for g, n in sorted(e.poison_parked.items()))
    yield (
        "dead letters",
        f"{e.dead_letters_listed} listed, {e.dead_letters_counted} counted"
        + (f" (poison parked: {poison})" if poison else ""),
    )
    yield "losses", f"gaps {e.gaps}, node drops {e.node_dropped}, node parked {e.node_parked}"
    if e.oversized_capped:
        yield "oversized turns", f"{e.oversized_capped} archived once, cut to the cap"
    yield (
        "event latency (spoken -> archived)",
        f"p50 {_ms(e.latency_p50_ms)}, p99 {_ms(e.latency_p99_ms)}, max {_ms(e.latency_max_ms)}",
    )
    yield "pipeline caught up", f"{e.settle_s:.1f} s after the calls"


def fault_rows(report: ChaosReport) -> Iterator[tuple[str, str, str, str, str]]:
    """(at, fault, target, time to recover, note) per fault carried out."""
    t0 = report.history.started_at
    recoveries = {(r.kind, r.target, r.started_at): r for r in report.findings.recoveries}
    for e in report.history.faults:
        r = recoveries.get((e.kind, e.target, e.started_at))
        if r is None or r.touched_calls == 0:
            recovered = "no call touched"
        elif r.unrecovered_calls:
            recovered = f"{r.unrecovered_calls} calls never recovered"
        else:
            recovered = f"{r.recovery_s:.2f} s ({r.touched_calls} calls)"
        if r is not None and r.second_greetings:
            recovered += f"; {r.second_greetings} greeted again"
        note = e.detail if e.ok else f"FAILED: {e.detail}"
        if e.turns_in_flight:
            note = f"{e.turns_in_flight} turns in flight; {note}".rstrip("; ")
        param = f":{e.param:g}" if e.param is not None else ""
        yield f"{e.started_at - t0:6.2f} s", f"{e.kind}{param}", e.target, recovered, note


def print_summary(report: ChaosReport, console: Console) -> None:
    figures = Table(title="chaos run", box=box.SIMPLE, show_header=False)
    figures.add_column(style="bold")
    figures.add_column()
    for name, value in figure_rows(report):
        figures.add_row(name, value)
    faults = Table(title="faults", box=box.SIMPLE)
    for column in ("at", "fault", "target", "time to recover", "note"):
        faults.add_column(column)
    for row in fault_rows(report):
        faults.add_row(*row)
    f = report.findings
    verdict = "PASS" if f.passed else "FAIL"
    text = "\n".join([verdict, *(f"- {r}" for r in f.reasons)])
    if f.samples:
        text += "\n\nexamples:\n" + "\n".join(f"  {s}" for s in f.samples)
    style = "green" if f.passed else "red"
    console.print(Group(figures, faults, Panel(text, border_style=style, title="verdict")))


# --- HTML ----------------------------------------------------------------------------

_W, _H = 1100, 340
_L, _R, _T, _B = 60, 20, 30, 40


def timeline_svg(report: ChaosReport) -> str:
    """TTFB of every answered turn (log scale) against time, with the faults as bands
    and lost sockets as ticks on the time axis."""
    h = report.history
    t0 = h.started_at
    span = max(h.ended_at - t0, 1e-3)
    points = [
        (t.asked_at - t0, max((t.first_at - t.asked_at) * 1000.0, 0.1))
        for t in h.turns
        if t.first_at is not None
    ]
    top = max([p[1] for p in points] + [100.0])
    lo, hi = math.log10(0.1), math.log10(top * 1.5)
    pw, ph = _W - _L - _R, _H - _T - _B

    def x(s: float) -> float:
        return _L + pw * min(max(s / span, 0.0), 1.0)

    def y(ms: float) -> float:
        return _T + ph * (1 - (math.log10(ms) - lo) / (hi - lo))

    parts = [
        f'<svg class="timeline" viewBox="0 0 {_W} {_H}" xmlns="http://www.w3.org/2000/svg" '
        'role="img" aria-label="TTFB per turn against the faults">',
        f'<text x="{_L}" y="18" class="title">'
        "TTFB per turn (ms, log) and faults over the run (s)</text>",
        f'<rect x="{_L}" y="{_T}" width="{pw}" height="{ph}" fill="#fff" stroke="#94a3b8"/>',
    ]
    for i, e in enumerate(h.faults):
        start = e.started_at - t0
        end = (e.ended_at if e.ended_at is not None else e.started_at) - t0
        color = FAULT_COLORS.get(e.kind, "#64748b")
        width = max(x(end) - x(start), 2.0)
        parts.append(
            f'<rect x="{x(start):.1f}" y="{_T}" width="{width:.1f}" height="{ph}" '
            f'fill="{color}" fill-opacity="0.18" stroke="{color}">'
            f"<title>{escape(e.kind)} on {escape(e.target)}: {start:.2f}-{end:.2f} s</title></rect>"
        )
        parts.append(
            f'<text x="{x(start) + 2:.1f}" y="{_T + 12 + 12 * (i % 3)}" fill="{color}">'
            f"{escape(e.kind)}</text>"
        )
    for decade in range(math.ceil(lo), math.floor(hi) + 1):
        ms = 10.0**decade
        parts.append(
            f'<line x1="{_L}" x2="{_L + pw}" y1="{y(ms):.1f}" y2="{y(ms):.1f}" stroke="#e2e8f0"/>'
            f'<text x="{_L - 6}" y="{y(ms) + 4:.1f}" text-anchor="end">{ms:g}</text>'
        )
    step = _tick_step(span)
    tick = 0.0
    while tick <= span:
        parts.append(
            f'<text x="{x(tick):.1f}" y="{_T + ph + 16}" text-anchor="middle">{tick:g}</text>'
        )
        tick += step
    dots = "".join(f'<circle cx="{x(s):.1f}" cy="{y(ms):.1f}" r="2"/>' for s, ms in points)
    parts.append(f'<g fill="#2563eb" fill-opacity="0.7">{dots}</g>')
    lost = "".join(
        f'<line x1="{x(s.lost_at - t0):.1f}" x2="{x(s.lost_at - t0):.1f}" '
        f'y1="{_T + ph}" y2="{_T + ph - 8}"/>'
        for s in h.sockets
    )
    parts.append(f'<g stroke="#0f172a">{lost}</g>')
    parts.append(
        f'<text x="{_L + pw}" y="{_H - 6}" text-anchor="end">'
        "dots: turns (TTFB); ticks: sockets lost; bands: faults, start to end</text></svg>"
    )
    return "".join(parts)


def _tick_step(span: float) -> float:
    for step in (1, 2, 5, 10, 20, 30, 60, 120, 300, 600):
        if span / step <= 12:
            return float(step)
    return 1200.0


def render_html(report: ChaosReport) -> str:
    f = report.findings
    verdict = "PASS" if f.passed else "FAIL"
    title = f"switchboard chaos: seed {report.seed}, {report.profile}"
    rows = "".join(
        f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in figure_rows(report)
    )
    faults = "".join(
        "<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>"
        for row in fault_rows(report)
    )
    reasons = "".join(f"<li>{escape(r)}</li>" for r in f.reasons)
    samples = "".join(f"<li>{escape(s)}</li>" for s in f.samples)
    body = (
        f"<h1>{escape(title)}</h1>"
        f'<section class="verdict {verdict.lower()}"><h2>{verdict}</h2><ul>{reasons}</ul></section>'
        f"<h2>Timeline</h2>{timeline_svg(report)}"
        f'<h2>Figures</h2><table class="kv">{rows}</table>'
        "<h2>Faults</h2><table><thead><tr><th>at</th><th>fault</th><th>target</th>"
        f"<th>time to recover</th><th>note</th></tr></thead><tbody>{faults}</tbody></table>"
        + (f"<h2>Examples</h2><ul>{samples}</ul>" if samples else "")
        + f"<p>{report.calls} calls of {report.turns} turns over {report.duration_s:g} s "
        f"against {escape(report.url)}; the JSON report holds both histories.</p>"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{_CSS}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )


_CSS = """
body{margin:0;background:#f8fafc;color:#0f172a;font:14px/1.45 system-ui,sans-serif}
main{max-width:1180px;margin:0 auto;padding:24px}h1{font-size:22px}
h2{font-size:17px;margin:24px 0 8px}
.verdict{border-radius:8px;padding:12px 18px;border:2px solid}
.verdict h2{margin:0;font-size:28px}
.verdict.pass{background:#ecfdf5;border-color:#059669}.verdict.pass h2{color:#047857}
.verdict.fail{background:#fef2f2;border-color:#dc2626}.verdict.fail h2{color:#b91c1c}
table{border-collapse:collapse;background:#fff}
th,td{padding:5px 12px;border-bottom:1px solid #e2e8f0;text-align:left;vertical-align:top}
svg.timeline{width:100%;height:auto;background:#fff}
svg text{font:11px system-ui,sans-serif;fill:#475569}svg .title{font-size:13px;fill:#0f172a}
"""

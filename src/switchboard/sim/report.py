"""Rendering a ``RunReport``: the final terminal table, the JSON file and the HTML report.

All three render what the report holds and never re-judge it: run ``verdict.judge`` first.
The HTML file is self-contained (inline CSS and SVG, no scripts, fonts or links) so it
can be attached to a ticket or opened from CI artifacts as is. Every string that came
from the run (labels, call ids, violation details, scenario failures) is escaped, since
those may echo whatever a server under test sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from html import escape
from pathlib import Path

import msgspec
from rich import box
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from switchboard.atomic_file import write_atomically
from switchboard.sim.plots import cdf_svg, histogram_svg
from switchboard.sim.results import FailoverSummary, LatencySummary, RunReport, TurnKindStats
from switchboard.sim.verdict import BUDGET_RULE, JUDGED_KINDS

#: Violation samples shown per kind; the JSON keeps every sample the simulator kept.
SAMPLES_PER_KIND = 2
_DETAIL_CHARS = 160


class ReportError(ValueError):
    """A report file that cannot be read as a ``RunReport``."""


def write_json(report: RunReport, path: Path) -> None:
    """Write ``report`` as indented JSON, creating parent directories."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(path, msgspec.json.format(msgspec.json.encode(report), indent=2))


def load_json(path: Path) -> RunReport:
    """Read a report written by ``write_json`` (or ``switchboard simulate --json``)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ReportError(f"cannot read report {path}: {exc.strerror or exc}") from exc
    try:
        return msgspec.json.decode(data, type=RunReport)
    except msgspec.DecodeError as exc:  # ValidationError is a subclass
        raise ReportError(f"{path} is not a valid run report: {exc}") from exc


# --- terminal -----------------------------------------------------------------------------


def print_summary(report: RunReport, console: Console) -> None:
    """Print the end-of-run tables and the verdict to ``console``."""
    console.print(Group(_latency_table(report), _run_table(report), _verdict_panel(report)))


def _latency_table(report: RunReport) -> Table:
    title = Text(f"Latency (ms) - {report.label or report.url}", style="bold")
    table = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False)
    table.add_column("measure")
    for name in ("count", "p50", "p90", "p99", "max"):
        table.add_column(name, justify="right")
    for kind in report.per_kind:
        judged = kind.kind in JUDGED_KINDS
        table.add_row(*_latency_cells(f"{kind.kind} TTFB", kind.ttfb, report.budget_ms, judged))
        table.add_row(*_latency_cells(f"{kind.kind} TTC", kind.ttc, report.budget_ms, False))
    table.add_section()
    for name, summary in _connection_latencies(report):
        table.add_row(*_latency_cells(name, summary, report.budget_ms, False))
    return table


def _latency_cells(
    name: str, s: LatencySummary, budget_ms: float, judged: bool
) -> tuple[Text, ...]:
    over = judged and s.count > 0 and s.p99_ms > budget_ms
    p99 = Text(_ms(s.p99_ms), style="bold red" if over else "")
    return (
        Text(name),
        Text(str(s.count)),
        Text(_ms(s.p50_ms)),
        Text(_ms(s.p90_ms)),
        p99,
        Text(_ms(s.max_ms)),
    )


def _run_table(report: RunReport) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_header=False, pad_edge=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    for name, value in _run_rows(report):
        table.add_row(name, Text(value))
    return table


def _run_rows(report: RunReport) -> Iterator[tuple[str, str]]:
    """(name, plain text) rows shared by the terminal table and the HTML summary."""
    profile = f", profile {report.profile}" if report.profile else ""
    yield "run", f"{report.url}, {report.duration_s:.1f} s from {report.started_at}{profile}"
    failed = sum(report.calls_failed.values())
    calls = f"{report.calls_started} started, {report.calls_completed} completed, {failed} failed"
    if report.calls_failed:
        calls += f" ({_counts(report.calls_failed)})"
    if report.reconnects:
        calls += f", {report.reconnects} reconnects"
    if report.calls_ended:
        calls += "\nended: " + _counts(report.calls_ended)
    yield "calls", calls
    if report.reconnects or report.reconnect_events:
        yield "reconnects", _reconnects_text(report)
    if report.failover is not None:
        yield "failover", _failover_text(report.failover)
    yield "turns", f"{report.turns} ({report.turns_per_s:.1f}/s)"
    if report.cache:
        from switchboard.sim.server_metrics import cache_text

        yield "response cache", cache_text(report.cache)
    if report.server_timings:
        from switchboard.sim.server_metrics import breakdown_text

        response = next((k for k in report.per_kind if k.kind == "response"), None)
        client_p50 = response.ttfb.p50_ms if response is not None else 0.0
        yield "latency breakdown", breakdown_text(report.server_timings, client_p50)
    yield "violations", _violations_text(report)
    if report.frames_sent or report.frames_received:
        frames = f"{report.frames_sent} sent, {report.frames_received} received"
        if report.server_messages:
            frames += "; besides responses: " + _counts(report.server_messages)
        yield "frames", frames
    if report.stale_in_grace or report.frames_dropped:
        yield (
            "dropped frames",
            f"{report.stale_in_grace} stale within grace, {report.frames_dropped} dropped",
        )
    if report.scenarios:
        yield "scenarios", _scenarios_text(report)
    yield "simulator", _process_text(report.client.cpu_percent, report.client.loop_lag)
    if report.server is not None:
        server = (
            f"{report.server.cpu_seconds:.2f} CPU s ({report.server.cpu_percent:.0f}% of a core)"
        )
        if report.turns_per_core_s is not None:
            server += f", {report.turns_per_core_s:.0f} turns/s per core"
        yield "server", server
    yield "budget", f"{report.budget_ms:g} ms: {BUDGET_RULE}"


def _reconnects_text(report: RunReport) -> str:
    causes = report.reconnects_by_cause
    text = (
        f"{report.reconnects} ({causes.get('abnormal', 0)} after an abnormal close (1006), "
        f"{causes.get('keepalive', 0)} after missing pongs); "
        f"{report.calls_reconnected} calls reconnected, {report.calls_resumed} resumed"
    )
    lost = len(report.reconnect_events) - sum(
        1 for e in report.reconnect_events if e.reopened_at is not None
    )
    if lost:
        text += f"; {lost} sockets never reopened"
    s = report.loss_to_answer
    if s.count:
        text += (
            f"\nsocket lost -> first answered turn: p50 {_ms(s.p50_ms)} ms, "
            f"p99 {_ms(s.p99_ms)} ms, max {_ms(s.max_ms)} ms ({s.count})"
        )
    return text


def _failover_text(f: FailoverSummary) -> str:
    text = (
        f"kill -9 of {f.killed_node} holding {f.calls_on_killed_node} calls: "
        f"{f.calls_lost_socket} calls cut off, {f.calls_resumed} resumed"
    )
    s = f.kill_to_answer
    if s.count:
        text += (
            f"\nkill -> first answered turn after reconnect: p50 {_ms(s.p50_ms)} ms, "
            f"p99 {_ms(s.p99_ms)} ms, max {_ms(s.max_ms)} ms ({s.count} sockets)"
        )
    return text


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k} x{n}" for k, n in sorted(counts.items()))


def _violations_text(report: RunReport) -> str:
    if not any(report.violations.values()):
        return "none"
    lines = []
    for kind, count in sorted(report.violations.items()):
        lines.append(f"{kind} x{count}")
        samples = [v for v in report.violation_samples if v.kind == kind][:SAMPLES_PER_KIND]
        for v in samples:
            rid = f" #{v.response_id}" if v.response_id is not None else ""
            lines.append(f"  {v.call_id}{rid} @{v.at_s:.2f}s: {_clip(v.detail)}")
    return "\n".join(lines)


def _scenarios_text(report: RunReport) -> str:
    passed = sum(1 for s in report.scenarios if s.passed)
    lines = [f"{passed}/{len(report.scenarios)} passed"]
    for s in report.scenarios:
        if not s.passed:
            lines.append(f"  {s.name}: {_clip('; '.join(s.failures) or 'failed')}")
    return "\n".join(lines)


def _process_text(cpu_percent: float, loop_lag: LatencySummary | None) -> str:
    text = f"{cpu_percent:.0f}% of a core"
    if loop_lag is not None and loop_lag.count:
        text += f", loop lag p99 {_ms(loop_lag.p99_ms)} ms (max {_ms(loop_lag.max_ms)} ms)"
    return text


def _verdict_panel(report: RunReport) -> Panel:
    lines = Text()
    lines.append(
        "PASS" if report.passed else "FAIL", style="bold green" if report.passed else "bold red"
    )
    lines.append(f" against {_article(report.budget_ms)} {report.budget_ms:g} ms budget")
    for reason in report.verdict_reasons:
        lines.append("\n  - " + reason, style="red")
    for warning in report.verdict_warnings:
        lines.append("\n  ! " + warning, style="yellow")
    return Panel(
        lines,
        title="verdict",
        title_align="left",
        border_style="green" if report.passed else "red",
        expand=False,
    )


def _connection_latencies(report: RunReport) -> list[tuple[str, LatencySummary]]:
    rows = [
        ("connect (socket open)", report.connect),
        ("dial to greeting", report.greeting),
        ("pong RTT", report.pong_rtt),
    ]
    if report.loss_to_answer.count:
        rows.append(("socket lost to answered turn", report.loss_to_answer))
    return rows


def _ms(v: float) -> str:
    if v < 1:
        return f"{v:.3f}"
    if v < 100:
        return f"{v:.1f}"
    return f"{v:.0f}"


def _clip(text: str) -> str:
    return text if len(text) <= _DETAIL_CHARS else text[: _DETAIL_CHARS - 1] + "\u2026"


# --- HTML ---------------------------------------------------------------------------------


def write_html(report: RunReport, path: Path) -> None:
    """Write the self-contained HTML report, creating parent directories."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(path, render_html(report).encode())


def render_html(report: RunReport) -> str:
    """The HTML report as a string (one page, inline CSS and SVG)."""
    title = f"switchboard run: {report.label or report.url}"
    verdict = "PASS" if report.passed else "FAIL"
    body = [
        f"<h1>{escape(title)}</h1>",
        f'<section class="verdict {verdict.lower()}"><h2>{verdict}</h2>'
        f"<p>against {_article(report.budget_ms)} {report.budget_ms:g} ms budget: "
        f"{escape(BUDGET_RULE)}.</p>",
        _html_list(report.verdict_reasons, "reasons"),
        _html_list(report.verdict_warnings, "warnings"),
        "</section>",
        "<h2>Summary</h2>",
        _html_kv(_run_rows(report)),
        "<h2>Latency (ms)</h2>",
        _html_latency_table(report),
    ]
    for kind in report.per_kind:
        budget = report.budget_ms if kind.kind in JUDGED_KINDS else 0.0
        body.append(f"<h3>{escape(_turns_heading(kind))}</h3><div class='plots'>")
        body.append(
            histogram_svg(kind.ttfb, budget_ms=budget, title=f"{kind.kind}: TTFB histogram")
        )
        body.append(
            cdf_svg(
                [("TTFB", kind.ttfb), ("TTC", kind.ttc)],
                budget_ms=budget,
                title=f"{kind.kind}: CDF",
            )
        )
        body.append("</div>")
    if report.violation_samples:
        body.append("<h2>Violation samples</h2>")
        body.append(_html_violations(report))
    if report.scenarios:
        body.append("<h2>Scenarios</h2>")
        body.append(_html_scenarios(report))
    if report.options:
        body.append("<h2>Options</h2>")
        body.append(_html_kv((str(k), str(v)) for k, v in sorted(report.options.items())))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>"
        f"<body><main>{''.join(body)}</main></body></html>\n"
    )


def _turns_heading(kind: TurnKindStats) -> str:
    """Agrees with the latency table: TTFB counts requests answered, TTC turns completed."""
    answered, completed = kind.ttfb.count, kind.turns
    if answered == completed:
        return f"{kind.kind} turns ({completed})"
    return f"{kind.kind} turns ({answered} answered, {completed} completed)"


def _html_list(items: list[str], cls: str) -> str:
    if not items:
        return ""
    return f'<ul class="{cls}">' + "".join(f"<li>{escape(i)}</li>" for i in items) + "</ul>"


def _html_kv(rows: Iterator[tuple[str, str]]) -> str:
    cells = "".join(
        f"<tr><th>{escape(k)}</th><td><pre>{escape(v)}</pre></td></tr>" for k, v in rows
    )
    return f'<table class="kv">{cells}</table>'


def _html_latency_table(report: RunReport) -> str:
    head = "<tr><th>measure</th><th>count</th><th>p50</th><th>p90</th><th>p99</th><th>max</th></tr>"
    rows = []
    for kind in report.per_kind:
        judged = kind.kind in JUDGED_KINDS
        rows.append(_html_latency_row(f"{kind.kind} TTFB", kind.ttfb, report.budget_ms, judged))
        rows.append(_html_latency_row(f"{kind.kind} TTC", kind.ttc, report.budget_ms, False))
    for name, summary in _connection_latencies(report):
        rows.append(_html_latency_row(name, summary, report.budget_ms, False))
    return f'<table class="num"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def _html_latency_row(name: str, s: LatencySummary, budget_ms: float, judged: bool) -> str:
    over = judged and s.count > 0 and s.p99_ms > budget_ms
    p99_cls = ' class="over"' if over else ""
    return (
        f"<tr><th>{escape(name)}</th><td>{s.count}</td><td>{_ms(s.p50_ms)}</td>"
        f"<td>{_ms(s.p90_ms)}</td><td{p99_cls}>{_ms(s.p99_ms)}</td><td>{_ms(s.max_ms)}</td></tr>"
    )


def _html_violations(report: RunReport) -> str:
    rows = "".join(
        f"<tr><td>{escape(v.kind)}</td><td>{escape(v.call_id)}</td>"
        f"<td>{'' if v.response_id is None else v.response_id}</td><td>{v.at_s:.2f}</td>"
        f"<td>{escape(v.detail)}</td></tr>"
        for v in report.violation_samples
    )
    head = "<tr><th>kind</th><th>call</th><th>id</th><th>at s</th><th>detail</th></tr>"
    return f"<table><thead>{head}</thead><tbody>{rows}</tbody></table>"


def _html_scenarios(report: RunReport) -> str:
    rows = "".join(
        f'<tr><td>{escape(s.name)}</td><td class="{"ok" if s.passed else "over"}">'
        f"{'pass' if s.passed else 'FAIL'}</td>"
        f"<td>{'<br>'.join(escape(f) for f in s.failures)}</td></tr>"
        for s in report.scenarios
    )
    head = "<tr><th>scenario</th><th>result</th><th>failures</th></tr>"
    return f"<table><thead>{head}</thead><tbody>{rows}</tbody></table>"


def _write_atomically(path: Path, data: bytes) -> None:
    """Readers (a browser refreshing, CI collecting artifacts) never see half a file."""
    write_atomically(path, data)


#: The report pages' style, shared with the replay report (one look for every page).
CSS = """
body{margin:0;background:#f8fafc;color:#0f172a;
font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif}
main{max-width:1180px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 16px;word-break:break-all}
h2{font-size:17px;margin:28px 0 8px}h3{font-size:15px;margin:20px 0 6px}
.verdict{border-radius:8px;padding:12px 18px;border:2px solid}
.verdict h2{margin:0;font-size:28px;letter-spacing:.05em}
.verdict.pass{background:#ecfdf5;border-color:#059669}.verdict.pass h2{color:#047857}
.verdict.fail{background:#fef2f2;border-color:#dc2626}.verdict.fail h2{color:#b91c1c}
.verdict p{margin:4px 0}.reasons li{color:#b91c1c}.warnings li{color:#a16207}
table{border-collapse:collapse;background:#fff;margin:4px 0;box-shadow:0 1px 2px #0f172a14}
th,td{padding:5px 12px;border-bottom:1px solid #e2e8f0;text-align:left;vertical-align:top}
thead th{background:#f1f5f9;font-weight:600}
table.num td{text-align:right;font-variant-numeric:tabular-nums}
table.kv th{width:120px}pre{margin:0;font:inherit;white-space:pre-wrap;word-break:break-word}
td.over{color:#b91c1c;font-weight:700}td.ok{color:#047857}
.plots{display:flex;flex-wrap:wrap;gap:12px}
svg.plot{width:560px;max-width:100%;height:auto;background:#fff;box-shadow:0 1px 2px #0f172a14}
svg .area{fill:#fff;stroke:#94a3b8}svg .grid{stroke:#e2e8f0}
svg text{font:11px system-ui,sans-serif;fill:#475569}
svg .title{font-size:13px;font-weight:600;fill:#0f172a}svg .legend{font-size:11px;fill:#0f172a}
"""


def _article(number: float) -> str:
    """'an 800 ms budget', 'a 300 ms budget': English reads the number aloud."""
    digits = f"{number:.0f}"
    if digits.startswith("8"):
        return "an"  # eight, eighty, eight hundred, eight thousand...
    eleven = digits.startswith(("11", "18")) and len(digits) % 3 == 2  # eleven, eighteen thousand
    return "an" if eleven else "a"

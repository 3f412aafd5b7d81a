"""Rendering run reports: terminal table, JSON round trip, self-contained escaped HTML."""

from __future__ import annotations

import io
from html.parser import HTMLParser
from pathlib import Path

import msgspec
import pytest
from rich.console import Console

from switchboard.sim.plots import cdf_svg, histogram_svg
from switchboard.sim.report import (
    ReportError,
    load_json,
    print_summary,
    render_html,
    write_html,
    write_json,
)
from switchboard.sim.results import (
    LatencySummary,
    ProcessStats,
    RunReport,
    ScenarioResult,
    Violation,
)
from switchboard.sim.verdict import judge
from tests.test_verdict import passing_report, summary

EVIL = '<script>alert("x")</script>&'


def render(report: RunReport) -> str:
    console = Console(file=io.StringIO(), width=140, record=True, color_system=None)
    print_summary(judge(report), console)
    return console.export_text()


def failing_report() -> RunReport:
    return passing_report(
        calls_completed=18,
        calls_failed={"error_llm_websocket_lost_connection": 2},
        violations={"stale_frame": 3},
        violation_samples=[
            Violation(
                kind="stale_frame", call_id=f"call-{i}", detail=f"frame for #{i}", response_id=i
            )
            for i in range(3)
        ],
        scenarios=[
            ScenarioResult(name="books-appointment", passed=True),
            ScenarioResult(name="asks-hours", passed=False, failures=["expected 'open' in reply"]),
        ],
        calls_ended={"user_hangup": 18, "error_llm_websocket_lost_connection": 2},
        frames_sent=400,
        frames_received=900,
        server_messages={"config": 20, "ping_pong": 40},
        server=ProcessStats(cpu_seconds=0.5, cpu_percent=4.0),
        turns_per_core_s=2400.0,
    )


def test_summary_shows_counts_latencies_and_pass() -> None:
    text = render(passing_report())
    assert "20 started, 20 completed, 0 failed" in text
    assert "120 (9.6/s)" in text
    assert "response TTFB" in text
    assert "barge_in TTC" in text
    assert "pong RTT" in text
    assert "PASS" in text
    assert "FAIL" not in text
    assert "16% of a core" in text


def test_summary_shows_failures_samples_scenarios_and_server() -> None:
    text = render(failing_report())
    assert "FAIL" in text
    assert "error_llm_websocket_lost_connection x2" in text
    assert "stale_frame x3" in text
    # Only a couple of samples per kind make it to the terminal.
    assert "call-0 #0" in text
    assert "call-1 #1" in text
    assert "call-2" not in text
    assert "asks-hours: expected 'open' in reply" in text
    assert "1/2 passed" in text
    assert "2400 turns/s per core" in text
    assert "ended: error_llm_websocket_lost_connection x2, user_hangup x18" in text
    assert "400 sent, 900 received; besides responses: config x20, ping_pong x40" in text


def test_summary_prints_markup_in_data_literally() -> None:
    text = render(passing_report(label="[bold red]not markup[/]"))
    assert "[bold red]not markup[/]" in text


def test_summary_shows_warnings_apart_from_reasons() -> None:
    text = render(passing_report(client=ProcessStats(cpu_percent=99.0)))
    assert "PASS" in text
    assert "! The simulator used 99% of a core" in text


def test_json_round_trip_is_lossless(tmp_path: Path) -> None:
    report = judge(failing_report())
    path = tmp_path / "nested" / "run.json"
    write_json(report, path)
    assert path.read_text().startswith("{\n")  # indented for humans and diffs
    assert load_json(path) == report


def test_load_json_rejects_files_that_are_not_reports(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"url": 3}')
    with pytest.raises(ReportError, match="not a valid run report"):
        load_json(bad)
    bad.write_text("not json")
    with pytest.raises(ReportError, match="not a valid run report"):
        load_json(bad)
    with pytest.raises(ReportError, match="cannot read"):
        load_json(tmp_path / "missing.json")


class _Collector(HTMLParser):
    VOID = {"meta", "br", "rect", "line", "path", "input", "img", "link"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.mismatched: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.mismatched.append(tag)
        else:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> _Collector:
    parser = _Collector()
    parser.feed(html)
    parser.close()
    return parser


def test_html_is_balanced_and_self_contained(tmp_path: Path) -> None:
    path = tmp_path / "reports" / "run.html"
    write_html(judge(failing_report()), path)
    html = path.read_text()
    doc = parse(html)
    assert doc.mismatched == []
    assert doc.stack == []
    names = [t for t, _ in doc.tags]
    assert names.count("svg") == 6  # a histogram and a CDF for each of the three kinds
    assert any(t == "path" and (a.get("d") or "").startswith("M") for t, a in doc.tags)
    assert any(t == "line" and a.get("class") == "budget" for t, a in doc.tags)
    # Nothing loaded from elsewhere: no scripts, stylesheets, images or fonts.
    assert not {"script", "link", "img", "iframe"} & set(names)
    assert not any((a.get("src") or a.get("href")) for _, a in doc.tags)
    assert "url(" not in html
    text = "".join(doc.text)
    assert "FAIL" in text
    assert "asks-hours" in text


def test_html_escapes_every_string_from_the_run() -> None:
    report = judge(
        passing_report(
            label=EVIL,
            violations={EVIL: 1},
            violation_samples=[Violation(kind=EVIL, call_id=EVIL, detail=EVIL)],
            scenarios=[ScenarioResult(name=EVIL, passed=False, failures=[EVIL])],
            options={EVIL: EVIL},
            per_kind=[
                *passing_report().per_kind,
                msgspec.structs.replace(passing_report().per_kind[1], kind=EVIL),
            ],
        )
    )
    html = render_html(report)
    doc = parse(html)
    assert "<script>" not in html
    assert "script" not in [t for t, _ in doc.tags]
    assert doc.mismatched == []
    # The text survives, as text.
    assert EVIL in "".join(doc.text)


def test_passing_html_shows_a_pass_banner() -> None:
    doc = parse(render_html(judge(passing_report())))
    banner = [a for t, a in doc.tags if t == "section"]
    assert banner == [{"class": "verdict pass"}]


def test_cdf_is_a_monotonic_step_line_with_the_budget_inside_the_plot() -> None:
    svg = cdf_svg([("TTFB", summary([1.0, 2.0, 4.0, 50.0]))], budget_ms=800, title="t")
    doc = parse(svg)
    path = next(a["d"] for t, a in doc.tags if t == "path")
    assert path is not None
    xs = [float(seg.split("V")[0]) for seg in path.split("H")[1:]]
    assert xs == sorted(xs)
    budget = next(a for t, a in doc.tags if t == "line" and a.get("class") == "budget")
    assert 52 <= float(budget["x1"] or 0) <= 560 - 16
    assert "budget 800 ms" in "".join(doc.text)


def test_histogram_bar_heights_follow_counts() -> None:
    s = LatencySummary(count=6, buckets=[(1.0, 1), (2.0, 4), (3.0, 1)])
    doc = parse(histogram_svg(s, budget_ms=0, title="h"))
    heights = [float(a["height"] or 0) for t, a in doc.tags if t == "rect" and "y" in a][1:]
    assert heights[1] == max(heights)
    assert heights[0] == pytest.approx(heights[2])
    assert heights[1] == pytest.approx(4 * heights[0])
    assert not any(a.get("class") == "budget" for _, a in doc.tags)


def test_plots_without_data_say_so() -> None:
    assert "no data" in histogram_svg(LatencySummary(), budget_ms=800, title="h")
    assert "no data" in cdf_svg([("TTFB", LatencySummary())], budget_ms=800, title="c")


def test_turn_headings_agree_with_the_latency_table() -> None:
    report = passing_report()
    kind = report.per_kind[0]
    # One request got its first frame but never completed (the call dropped mid-turn).
    kind.ttfb.count = kind.turns + 1
    html = render_html(judge(report))
    assert f"{kind.kind} turns ({kind.turns + 1} answered, {kind.turns} completed)" in html
    assert f"<th>{kind.kind} TTFB</th><td>{kind.turns + 1}</td>" in html


def test_options_in_the_report_leave_out_what_was_not_set() -> None:
    from switchboard.sim.options import SimOptions

    recorded = SimOptions(url="ws://127.0.0.1:1/llm-websocket", profile="single").as_report_dict()
    assert None not in recorded.values()
    assert recorded["budget_ms"] == 800

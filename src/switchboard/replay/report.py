"""The replay's outputs: the JSON summary, an HTML page, JUnit XML for CI.

The HTML page uses the simulator report's style and shows each differing turn side by
side (what the recording has, what the replay got). In JUnit each replayed call is a
test case, failed with its differences as the message, so a CI server lists the calls
that changed.
"""

from __future__ import annotations

import json
from collections import defaultdict
from html import escape
from pathlib import Path
from xml.etree import ElementTree as ET

from switchboard.atomic_file import write_atomically
from switchboard.replay.compare import Difference, Summary
from switchboard.replay.run import ReplayRun
from switchboard.sim.report import CSS


def _write(path: Path, data: str) -> None:
    write_atomically(path, data)


def write_json(summary: Summary, path: Path) -> None:
    _write(path, json.dumps(summary.as_dict(), indent=2) + "\n")


def _turn_label(d: Difference) -> str:
    if d.turn == 0:
        return "greeting"
    return f"turn {d.turn}" if d.caller else f"turn {d.turn} (reminder)"


def render_html(summary: Summary, run: ReplayRun, title: str) -> str:
    differing = summary.turns_differing
    verdict = "fail" if summary.differences else "pass"
    latency = summary.latency
    rows = [
        ("calls", str(summary.calls)),
        ("turns compared", str(summary.turns_compared)),
        ("turns differing", str(differing)),
        ("differences", str(len(summary.differences))),
        ("duration", f"{run.duration_s:.2f} s"),
    ]
    if latency is not None and latency.ttfb_p50_ms is not None:
        rows.append(
            (
                "TTFB",
                f"p50 {latency.ttfb_p50_ms:g} ms, p99 {latency.ttfb_p99_ms:g} ms, "
                f"{latency.over_budget} of {latency.turns} over the "
                f"{latency.budget_ms:g} ms budget",
            )
        )
    body = [
        f"<h1>{escape(title)}</h1>",
        f'<section class="verdict {verdict}"><h2>{verdict.upper()}</h2>'
        f"<p>{len(summary.differences)} difference(s) in {differing} of "
        f"{summary.turns_compared} caller turns across {summary.calls} calls.</p></section>",
        "<h2>Summary</h2><table class='kv'>",
        *(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows),
        "</table>",
    ]
    by_call: dict[str, list[Difference]] = defaultdict(list)
    for d in summary.differences:
        by_call[d.call_id].append(d)
    for call_id, diffs in by_call.items():
        body.append(f"<h3>call {escape(call_id)}</h3><table>")
        body.append(
            "<thead><tr><th>turn</th><th>kind</th><th>caller</th>"
            "<th>recorded</th><th>replayed</th></tr></thead>"
        )
        for d in diffs:
            body.append(
                f"<tr><td>{escape(_turn_label(d))}</td><td>{escape(d.kind)}</td>"
                f"<td><pre>{escape(d.caller)}</pre></td>"
                f"<td class='ok'><pre>{escape(d.expected)}</pre></td>"
                f"<td class='over'><pre>{escape(d.got)}</pre></td></tr>"
            )
        body.append("</table>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>"
        f"<body><main>{''.join(body)}</main></body></html>\n"
    )


def write_html(summary: Summary, run: ReplayRun, path: Path, title: str) -> None:
    _write(path, render_html(summary, run, title))


def render_junit(summary: Summary, run: ReplayRun) -> str:
    by_call: dict[str, list[Difference]] = defaultdict(list)
    for d in summary.differences:
        by_call[d.call_id].append(d)
    failed = sum(1 for played in run.calls if by_call.get(played.recorded.call_id))
    suite = ET.Element(
        "testsuite",
        name="switchboard replay",
        tests=str(len(run.calls)),
        failures=str(failed),
        errors="0",
        time=f"{run.duration_s:.3f}",
    )
    for played in run.calls:
        recorded = played.recorded
        case = ET.SubElement(suite, "testcase", classname="replay", name=f"call {recorded.call_id}")
        diffs = by_call.get(recorded.call_id)
        if diffs:
            failure = ET.SubElement(
                case, "failure", message=f"{len(diffs)} difference(s)", type="replay"
            )
            failure.text = "\n".join(
                f"{_turn_label(d)} [{d.kind}] caller: {d.caller!r}\n"
                f"  recorded: {d.expected!r}\n  replayed: {d.got!r}"
                for d in diffs
            )
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(summary: Summary, run: ReplayRun, path: Path) -> None:
    _write(path, render_junit(summary, run))

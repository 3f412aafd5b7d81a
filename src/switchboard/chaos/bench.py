"""The ``chaos`` bench case: a 3-node cluster of its own, 100 calls, one fault of each
kind, and the chaos report's figures in the bench results.

The cluster gets its own valkey-server (not the bench's shared one), because the case
restarts and pauses it. The chaos runner runs through its command line, as a user runs
it; what it restarted is stopped after the cluster.
"""

from __future__ import annotations

import contextlib
import signal
from datetime import UTC, datetime
from pathlib import Path

import psutil

from switchboard.chaos.report import load_json
from switchboard.chaos.run import ChaosReport
from switchboard.cluster.launch import start_cluster_child, stop_cluster_child
from switchboard.cluster.processes import SWITCHBOARD_ARGV, Child
from switchboard.config import BUDGET_MS
from switchboard.sim.metrics import Histogram
from switchboard.sim.results import RunReport, TurnKindStats

#: The chaos run lasts at least this long, whatever the bench's duration: 8 faults need room.
MIN_DURATION_S = 60.0
CLUSTER_ENV = {"SWITCHBOARD_DRAIN_TIMEOUT_S": "2", "SWITCHBOARD_LOG_LEVEL": "warning"}


def run_chaos_case(
    *,
    name: str,
    profile: str,
    calls: int,
    turns: int,
    duration_s: float,
    seed: int,
    agent_file: Path,
    log_dir: Path,
) -> tuple[int, ChaosReport]:
    """Start the cluster, run ``switchboard chaos`` against it, stop everything."""
    log_dir = log_dir / name
    cluster, _ = start_cluster_child(
        nodes=3,
        log_dir=log_dir,
        profile=profile,
        agent_file=agent_file,
        env={**CLUSTER_ENV, "SWITCHBOARD_MAX_CALLS": str(calls * 2 + 10)},
    )
    out = log_dir / "chaos.json"
    duration = max(duration_s, MIN_DURATION_S)
    argv = [*SWITCHBOARD_ARGV, "chaos", "--state", str(log_dir / "cluster.json")]
    argv += ["--calls", str(calls), "--turns", str(turns), "--duration", f"{duration:g}"]
    argv += ["--seed", str(seed), "--json-out", str(out), "--report", str(log_dir / "chaos.html")]
    report: ChaosReport | None = None
    try:
        child = Child("chaos", argv, log_path=log_dir / "chaos.log")
        try:
            code = child.wait(duration * 3 + 300)
        finally:
            child.stop()
        if not out.exists():
            raise child.error(f"exited with code {code} without writing {out}")
        report = load_json(out)
    finally:
        stop_cluster_child(cluster)
        for started in report.processes_started if report else []:
            with contextlib.suppress(psutil.Error):
                psutil.Process(started.pid).send_signal(signal.SIGKILL)
    return code, report


def as_run_report(name: str, report: ChaosReport) -> RunReport:
    """The chaos run in the bench's shape: calls, turns, TTFB of the turns, the verdict."""
    h = report.history
    ttfb, ttc = Histogram(), Histogram()
    for t in h.turns:
        if t.first_at is not None:
            ttfb.record(t.first_at - t.asked_at)
        if t.answered_at is not None:
            ttc.record(t.answered_at - t.asked_at)
    f = report.findings
    duration = max(h.ended_at - h.started_at, 1e-9)
    return RunReport(
        label=name,
        url=report.url,
        started_at=datetime.fromtimestamp(h.started_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        duration_s=round(duration, 3),
        profile=report.profile,
        budget_ms=float(BUDGET_MS.get(report.profile, 800)),
        calls_started=f.calls,
        calls_completed=f.calls - f.calls_lost,
        turns=f.turns_answered,
        turns_per_s=round(f.turns_answered / duration, 2),
        per_kind=[
            TurnKindStats(kind="response", turns=ttc.count, ttfb=ttfb.summary(), ttc=ttc.summary())
        ],
        passed=f.passed,
        verdict_reasons=list(f.reasons),
    )


def chaos_notes(name: str, report: ChaosReport) -> list[str]:
    """The figures of the chaos report, one line each, for the bench notes."""
    f = report.findings
    lines = [
        f"{name}: calls lost {f.calls_lost}, second greetings {f.second_greetings}, "
        f"repeated questions {f.repeated_questions}, replies differing from control "
        f"{f.replies_differing}, unanswered turns {f.unanswered_turns}"
    ]
    for r in f.recoveries:
        if r.touched_calls == 0:
            shown = "no call touched"
        elif r.recovery_s is None:
            shown = f"{r.unrecovered_calls} calls never recovered"
        else:
            shown = f"recovered in {r.recovery_s:.2f} s ({r.touched_calls} calls)"
        lines.append(f"{name}: {r.kind} on {r.target}: {shown}")
    return lines

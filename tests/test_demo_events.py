"""``switchboard demo --profile event-driven`` end to end, all real processes (valkey, the
tansu broker, the three services, two nodes, HAProxy, the simulator), small sizes; and
nothing left behind."""

from __future__ import annotations

import io
from pathlib import Path

import msgspec
from rich.console import Console

from switchboard.demo.run import DemoOptions, run_demo
from switchboard.sim.verdict import judge
from tests.test_demo_failover import processes_using


def test_event_driven_demo_archives_every_turn_and_escalates_once(tmp_path: Path) -> None:
    console = Console(file=io.StringIO(), width=160, record=True, color_system=None)
    options = DemoOptions(
        profile="event-driven",
        nodes=2,
        calls=8,
        turns=4,
        think_ms=0,
        stale_grace_ms=60_000,
        html_path=tmp_path / "demo.html",
        json_path=tmp_path / "demo.json",
    )
    report = run_demo(options, console, log_dir=tmp_path / "logs")

    text = console.export_text()
    # Every reason but the latency budget (tests never judge timings on a busy machine).
    untimed = [r for r in report.verdict_reasons if "budget" not in r.lower()]
    assert untimed == [], text
    assert judge(msgspec.structs.replace(report, budget_ms=1e9)).passed, text
    assert [(s.name, s.passed) for s in report.scenarios] == [("asks-for-a-manager-twice", True)]
    assert report.server_messages.get("agent_interrupt") == 1
    assert report.calls_ended.get("call_transfer", 0) >= 1
    assert f"simulator: {report.turns} turns in {report.calls_started} calls" in text
    assert (
        f"archive:   {report.turns} turns (0 twice) in {report.calls_started} calls, 1 escalated"
        in text
    )
    assert f"analytics: {report.turns} turns" in text
    assert "dashboard: http://127.0.0.1:" in text
    assert "the archive and the simulator agree" in text
    assert processes_using(tmp_path) == []

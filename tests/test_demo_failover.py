"""``switchboard demo --profile distributed``: the failover demo end to end, with real
processes (valkey-server, three nodes, HAProxy, the simulator), and nothing left behind."""

from __future__ import annotations

import io
from pathlib import Path

import msgspec
import psutil
from rich.console import Console

from switchboard.demo.run import DemoOptions, run_demo
from switchboard.sim.report import load_json
from switchboard.sim.verdict import judge


def processes_using(directory: Path) -> list[psutil.Process]:
    """Live processes whose command line or open files (their logs) are under ``directory``:
    every process the demo started has one or the other."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if any(str(directory) in arg for arg in proc.cmdline()) or any(
                f.path.startswith(str(directory)) for f in proc.open_files()
            ):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def test_failover_demo_kills_the_busiest_node_and_every_call_resumes(tmp_path: Path) -> None:
    console = Console(file=io.StringIO(), width=160, record=True, color_system=None)
    options = DemoOptions(
        profile="distributed",
        calls=12,
        turns=8,
        # A frame the server sent before reading a barge-in is in flight, however late a
        # busy machine delivers it; one sent after answering the newer request still counts.
        stale_grace_ms=60_000,
        html_path=tmp_path / "demo.html",
        json_path=tmp_path / "demo.json",
    )
    report = run_demo(options, console, log_dir=tmp_path / "logs")

    # Every reason but the latency budget (tests never judge timings on a busy machine).
    untimed = judge(msgspec.structs.replace(report, budget_ms=1e9))
    assert untimed.passed, untimed.verdict_reasons
    failover = report.failover
    assert failover is not None
    assert failover.calls_on_killed_node >= 1
    assert failover.calls_lost_socket >= 1
    assert failover.calls_resumed == failover.calls_lost_socket
    assert failover.kill_to_answer.count >= 1
    assert report.violations == {}  # no repeated greeting, every expectation met
    assert report.calls_failed == {}
    assert all(s.passed for s in report.scenarios)
    assert load_json(options.json_path) == report
    text = console.export_text()
    assert ("PASS" if report.passed else "FAIL") in text
    assert "kill -9" in text
    assert "kill -> first answered turn after reconnect" in text
    assert "kill -&gt; first answered turn" in options.html_path.read_text()
    assert processes_using(tmp_path) == []

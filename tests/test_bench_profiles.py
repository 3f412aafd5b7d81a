"""An event-driven bench case: its archive service starts and stops with the case, and it
reports the turn-completed -> archived latency of every turn."""

from __future__ import annotations

import io
from pathlib import Path

import psutil
from rich.console import Console

from switchboard.bench.cases import BenchCase, BenchSettings
from switchboard.bench.run import run_bench


def test_an_event_driven_case_measures_event_latency_and_cleans_up(tmp_path: Path) -> None:
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    console = Console(record=True, width=200, file=io.StringIO())
    cases = [
        BenchCase(name="tiny-distributed", agent="scripted", calls=3, profile="distributed"),
        BenchCase(
            name="tiny-events",
            agent="scripted",
            calls=3,
            profile="event-driven",
            min_turns_per_core_vs=("tiny-distributed", 0.01),
            archive_live=True,
        ),
        BenchCase(name="tiny-drained", agent="scripted", calls=3, profile="event-driven"),
    ]
    settings = BenchSettings(duration_s=1, turns=2, think_ms=20, results_dir=tmp_path / "r")
    run = run_bench(cases, settings, console, log_dir=tmp_path / "logs")
    assert run.errors == {}
    assert run.passed
    distributed, events, drained = run.results
    assert distributed.event_latency_ms is None
    latency = events.event_latency_ms
    assert latency is not None
    assert latency["archived"] == events.report.turns > 0
    assert 0 <= latency["p50"] <= latency["p99"]
    assert events.missed_targets == []
    assert drained.event_latency_ms == {"archived": drained.report.turns}
    text = console.export_text()
    assert "archive drained after the run" in text
    assert "event latency (turn completed -> archived)" in text
    left = [
        p
        for p in psutil.Process().children(recursive=True)
        if p.pid not in before and p.status() != psutil.STATUS_ZOMBIE
    ]
    assert left == []

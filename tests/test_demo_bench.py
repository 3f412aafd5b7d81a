"""The orchestration behind ``make demo`` and ``make bench``: child processes, then both runs.

Children are real processes; every test checks that what it started is gone afterwards.
"""

from __future__ import annotations

import io
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from rich.console import Console

from switchboard.bench.cases import BenchCase, BenchSettings, choose_cases
from switchboard.bench.judge import missed_targets
from switchboard.bench.results import load_bench
from switchboard.bench.run import run_bench, simulator_args, with_server_cpu
from switchboard.cluster.processes import (
    Child,
    ChildError,
    free_port,
    pin_prefix,
    run_simulator,
    start_server,
    wait_http_ready,
    wait_port_open,
)
from switchboard.config import builtin_example
from switchboard.demo.run import DemoOptions, run_demo
from switchboard.sim.report import load_json
from tests.fixtures.redis import SESSION_SERVER_PIDS
from tests.test_verdict import passing_report


def gone(pid: int) -> bool:
    """No such process, or only a zombie waiting for init to reap it."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def wait_for_line(child: Child, prefix: str, deadline_s: float = 20.0) -> str:
    """The first line of the child's log starting with ``prefix`` (polls the log file)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        for line in child.log_path.read_text().splitlines():
            if line.startswith(prefix):
                return line
        assert child.poll() is None, child.log_tail()
        time.sleep(0.02)
    raise AssertionError(f"no {prefix!r} line from {child.name}: {child.log_tail()}")


@pytest.fixture
def children() -> Iterator[list[Child]]:
    """Children a test starts; stopped whatever the test's outcome."""
    started: list[Child] = []
    yield started
    for child in started:
        child.stop()


@pytest.mark.integration
def test_stop_ends_the_child_and_everything_it_spawned(
    tmp_path: Path, children: list[Child]
) -> None:
    code = (
        "import subprocess, sys, time\n"
        "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "print('grandchild', g.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    child = Child("parent", python(code), log_path=tmp_path / "parent.log")
    children.append(child)
    grandchild = int(wait_for_line(child, "grandchild").split()[1])
    assert not gone(grandchild)

    assert child.stop() == -signal.SIGTERM
    assert gone(child.pid)
    assert gone(grandchild)
    assert child.stop() == -signal.SIGTERM  # stopping twice is harmless


@pytest.mark.integration
def test_stop_kills_a_child_that_ignores_sigterm(tmp_path: Path, children: list[Child]) -> None:
    code = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(600)\n"
    )
    child = Child("stubborn", python(code), log_path=tmp_path / "stubborn.log")
    children.append(child)
    wait_for_line(child, "ready")
    assert child.stop(timeout_s=0.2) == -signal.SIGKILL
    assert gone(child.pid)


@pytest.mark.integration
def test_cpu_seconds_counts_the_childs_own_work(tmp_path: Path, children: list[Child]) -> None:
    code = (
        "import time\n"
        "while time.process_time() < 0.3: pass\n"
        "print('busy done', flush=True)\n"
        "time.sleep(600)\n"
    )
    child = Child("busy", python(code), log_path=tmp_path / "busy.log")
    children.append(child)
    wait_for_line(child, "busy done")
    assert child.cpu_seconds() >= 0.25  # kernel accounting is in 10 ms ticks
    child.stop()
    assert child.cpu_seconds() == 0.0


@pytest.mark.integration
def test_wait_http_ready_returns_once_the_child_answers(
    tmp_path: Path, children: list[Child]
) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    argv += ["--directory", str(tmp_path)]
    child = Child("http", argv, log_path=tmp_path / "http.log")
    children.append(child)
    wait_http_ready(child, f"http://127.0.0.1:{port}/", deadline_s=30)
    assert child.poll() is None


@pytest.mark.integration
def test_wait_http_ready_fails_at_once_when_the_child_dies(
    tmp_path: Path, children: list[Child]
) -> None:
    child = Child(
        "crasher",
        python("import sys; print('bad agent file'); sys.exit(3)"),
        log_path=tmp_path / "crasher.log",
    )
    children.append(child)
    with pytest.raises(ChildError, match="exited with code 3") as err:
        wait_http_ready(child, f"http://127.0.0.1:{free_port()}/readyz", deadline_s=60)
    assert "bad agent file" in str(err.value)


@pytest.mark.integration
def test_readiness_waits_give_up_at_their_deadline(tmp_path: Path, children: list[Child]) -> None:
    child = Child("idle", python("import time; time.sleep(600)"), log_path=tmp_path / "i.log")
    children.append(child)
    port = free_port()
    with pytest.raises(ChildError, match="not ready"):
        wait_http_ready(child, f"http://127.0.0.1:{port}/readyz", deadline_s=0.2)
    with pytest.raises(ChildError, match="not listening"):
        wait_port_open(child, port, deadline_s=0.2)


@pytest.mark.integration
def test_wait_port_open_returns_once_the_child_listens(
    tmp_path: Path, children: list[Child]
) -> None:
    port = free_port()
    code = (
        f"import socket, time\ns = socket.create_server(('127.0.0.1', {port}))\ntime.sleep(600)\n"
    )
    child = Child("listener", python(code), log_path=tmp_path / "listener.log")
    children.append(child)
    wait_port_open(child, port, deadline_s=30)


def test_pinning_uses_taskset_only_for_an_existing_core() -> None:
    assert pin_prefix(None) == []
    assert pin_prefix(10_000) == []
    if pin_prefix(0):
        assert pin_prefix(0) == ["taskset", "-c", "0"]


@pytest.mark.integration
def test_a_simulator_that_writes_no_report_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ChildError, match="without writing"):
        run_simulator(
            ["--no-such-option"], json_path=tmp_path / "out.json", log_dir=tmp_path, timeout_s=60
        )


@pytest.mark.integration
def test_server_starts_ready_and_stops_cleanly(tmp_path: Path) -> None:
    server = start_server(
        port=free_port(),
        agent_file=builtin_example("receptionist.yaml"),
        log_dir=tmp_path,
        env={"SWITCHBOARD_DRAIN_TIMEOUT_S": "1"},
    )
    try:
        response = httpx.get(f"http://127.0.0.1:{server.port}/readyz", timeout=10)
        assert response.status_code == 200
        assert server.cpu_seconds() > 0
    finally:
        code = server.stop()
    assert code == 0  # drained and exited on SIGTERM, not killed
    assert gone(server.pid)


@pytest.mark.integration
def test_a_server_that_cannot_start_reports_why(tmp_path: Path) -> None:
    with pytest.raises(ChildError, match="exited with code") as err:
        start_server(port=free_port(), agent_file=tmp_path / "missing.yaml", log_dir=tmp_path)
    assert "missing.yaml" in str(err.value)


def child_pids() -> set[int]:
    return {proc.pid for proc in psutil.Process().children(recursive=True)}


def switchboard_children(before: set[int]) -> list[psutil.Process]:
    """Processes started since ``before`` was read that are still alive (servers,
    simulators, fake LLMs), apart from the session's shared servers (the test Redis).
    Children of earlier tests (multiprocessing's resource tracker) are not this test's."""
    alive = []
    for proc in psutil.Process().children(recursive=True):
        if proc.pid in SESSION_SERVER_PIDS or proc.pid in before:
            continue
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.NoSuchProcess:
            continue
    return alive


def quiet_console() -> Console:
    return Console(file=io.StringIO(), width=160, record=True, color_system=None)


@pytest.mark.integration
def test_demo_runs_scenarios_and_random_calls_and_passes(tmp_path: Path) -> None:
    before = child_pids()
    console = quiet_console()
    options = DemoOptions(
        calls=2, turns=2, html_path=tmp_path / "demo.html", json_path=tmp_path / "demo.json"
    )
    report = run_demo(options, console, log_dir=tmp_path / "logs")

    assert report.passed, report.verdict_reasons
    assert report.scenarios, "the receptionist scenarios were played"
    assert all(s.passed for s in report.scenarios)
    assert report.calls_completed >= 2 + len(report.scenarios)
    assert load_json(options.json_path) == report
    assert "PASS" in options.html_path.read_text()
    text = console.export_text()
    assert "PASS" in text
    assert str(options.html_path) in text
    assert switchboard_children(before) == []


@pytest.mark.system
def test_bench_measures_server_cpu_and_writes_results(tmp_path: Path) -> None:
    before = child_pids()
    console = quiet_console()
    cases = [
        BenchCase(name="tiny-scripted", agent="scripted", calls=3, min_turns_per_core_s=1),
        BenchCase(name="tiny-openai", agent="openai", calls=2, max_ttfb_p99_ms=1e9),
    ]
    settings = BenchSettings(duration_s=1, turns=2, think_ms=20, results_dir=tmp_path / "r")
    run = run_bench(cases, settings, console, log_dir=tmp_path / "logs")

    assert run.errors == {}
    assert [r.case.name for r in run.results] == ["tiny-scripted", "tiny-openai"]
    for result in run.results:
        report = result.report
        assert report.passed, (result.case.name, report.verdict_reasons)
        assert report.label == result.case.name
        assert report.turns > 0
        assert report.server is not None
        assert report.server.cpu_seconds > 0
        assert report.turns_per_core_s == pytest.approx(report.turns / report.server.cpu_seconds)
        assert result.missed_targets == []
    assert run.passed
    latest = load_bench(settings.results_dir / "latest.json")
    stamped = [p for p in settings.results_dir.glob("bench-*.json")]
    assert len(stamped) == 1
    assert load_bench(stamped[0]) == latest
    assert [r.report for r in latest.results] == [r.report for r in run.results]
    assert "tiny-scripted" in console.export_text()
    assert switchboard_children(before) == []


def test_missed_targets_are_named() -> None:
    case = BenchCase(name="c", agent="scripted", calls=1, min_turns_per_core_s=2000)
    report = with_server_cpu(passing_report(turns=1000, duration_s=10), server_cpu_s=1.0)
    assert report.turns_per_core_s == 1000
    assert report.server is not None
    assert report.server.cpu_percent == pytest.approx(10.0)
    assert missed_targets(case, report) == ["turns/s per core 1000 < target 2000"]
    strict = BenchCase(name="c", agent="scripted", calls=1, max_ttfb_p99_ms=5)
    assert missed_targets(strict, report) == ["TTFB p99 18.0 ms > target 5 ms"]
    assert missed_targets(BenchCase(name="c", agent="scripted", calls=1), report) == []


def test_the_10000_call_case_runs_only_when_named_with_its_own_turns() -> None:
    every = [c.name for c in choose_cases(None)]
    assert "scripted-10000" not in every
    assert "scripted-5000" in every
    (case,) = choose_cases("scripted-10000")
    args = simulator_args(case, BenchSettings(turns=6), "ws://127.0.0.1:1/llm-websocket")
    assert args[args.index("--turns") + 1] == "16"
    assert args[args.index("--calls") + 1] == "10000"
    (small,) = choose_cases("scripted-100")
    args = simulator_args(small, BenchSettings(turns=6), "ws://127.0.0.1:1/llm-websocket")
    assert args[args.index("--turns") + 1] == "6"


@pytest.mark.integration
def test_an_unknown_agent_is_reported_not_raised(tmp_path: Path) -> None:
    run = run_bench(
        [BenchCase(name="bad", agent="nope", calls=1)],
        BenchSettings(duration_s=1, results_dir=tmp_path),
        quiet_console(),
        log_dir=tmp_path,
    )
    assert "unknown agent 'nope'" in run.errors["bad"]
    assert not run.passed

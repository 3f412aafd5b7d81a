"""``switchboard simulate`` as a user runs it: options in, report files out, exit code."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from switchboard.cli import app
from tests.fixtures.broken_servers import NeverCompletes, ReferenceServer, threaded_llm_server

pytestmark = pytest.mark.integration

runner = CliRunner()
FAST = ["--think-ms", "0", "--seed", "1"]


def test_simulate_passes_against_a_correct_server(tmp_path: Path) -> None:
    json_path = tmp_path / "run.json"
    html_path = tmp_path / "run.html"
    sigint = signal.getsignal(signal.SIGINT)
    with threaded_llm_server(ReferenceServer()) as url:
        result = runner.invoke(
            app,
            [
                "simulate",
                "--url",
                url,
                "--calls",
                "5",
                "--turns",
                "3",
                "--barge-in-rate",
                "0.3",
                "--reminder-rate",
                "0.3",
                "--profile",
                "event-driven",
                "--label",
                "cli test",
                "--json",
                str(json_path),
                "--report",
                str(html_path),
                *FAST,
            ],
        )
    assert result.exit_code == 0, result.output
    report = json.loads(json_path.read_text())
    assert report["passed"] is True
    assert report["label"] == "cli test"
    assert report["budget_ms"] == 300
    assert report["profile"] == "event-driven"
    assert report["calls_completed"] == 5
    assert report["options"]["barge_in_rate"] == 0.3
    assert "<html" in html_path.read_text().lower()
    assert "PASS" in result.output  # the summary
    assert signal.getsignal(signal.SIGINT) is sigint  # the Ctrl-C handler is gone again


def test_simulate_exits_non_zero_on_violations(tmp_path: Path) -> None:
    json_path = tmp_path / "run.json"
    with threaded_llm_server(NeverCompletes()) as url:
        result = runner.invoke(
            app,
            [
                "simulate",
                "--url",
                url,
                "--calls",
                "1",
                "--turns",
                "1",
                "--turn-timeout",
                "0.2",
                "--json",
                str(json_path),
                "--quiet",
                *FAST,
            ],
        )
    assert result.exit_code == 1
    report = json.loads(json_path.read_text())
    assert report["violations"] == {"missing_content_complete": 1}
    assert report["passed"] is False
    assert result.output == ""  # --quiet


def test_simulate_exits_non_zero_when_a_scenario_fails(tmp_path: Path) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text("turns:\n - say: hello\n   expect: {contains: bonjour}\n")
    with threaded_llm_server(ReferenceServer()) as url:
        result = runner.invoke(
            app, ["simulate", "--url", url, "--scenario", str(scenario), "--quiet", *FAST]
        )
    assert result.exit_code == 1


def test_simulate_rejects_bad_input_clearly(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("turns:\n - {say: hi, expect: {action: explode}}\n")
    result = runner.invoke(
        app, ["simulate", "--url", "ws://127.0.0.1:9/x", "--scenario", str(bad), "--quiet"]
    )
    assert result.exit_code == 2
    assert "bad.yaml: turn 1: action must be one of" in result.output

    result = runner.invoke(app, ["simulate", "--url", "127.0.0.1:9", "--quiet"])
    assert result.exit_code == 2
    assert "url must be" in result.output

    result = runner.invoke(
        app, ["simulate", "--url", "ws://127.0.0.1:9/x", "--profile", "huge", "--quiet"]
    )
    assert result.exit_code == 2
    assert "profile must be one of" in result.output

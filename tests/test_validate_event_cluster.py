"""``switchboard validate --cluster`` on ``switchboard cluster --profile event-driven`` with
its defaults (the default agent and escalation rules): the archive and escalation checks
pass on the real stack (valkey, Streams bus, the three services, two nodes, HAProxy),
read through the cluster's own state file, and so does the shipped event-driven scenario
(the default rules and the default agent agree on who hands a caller over)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from switchboard.cli import app
from switchboard.cluster.launch import start_cluster_child, stop_cluster_child
from switchboard.config import builtin_example
from switchboard.validate.events import ARCHIVE, ESCALATION
from switchboard.validate.report import load_report

pytestmark = pytest.mark.system


def test_validate_an_event_driven_cluster(tmp_path: Path) -> None:
    cluster, state = start_cluster_child(
        nodes=2,
        log_dir=tmp_path,
        profile="event-driven",
        agent_file=builtin_example("receptionist.yaml"),
        env={"SWITCHBOARD_MAX_CALLS": "6", "SWITCHBOARD_DRAIN_TIMEOUT_S": "5"},
        extra_args=["--bus", "redis"],
    )
    try:
        assert state.archive_db is not None
        args = [
            "validate",
            "--profile",
            "event-driven",
            "--cluster",
            str(tmp_path / "cluster.json"),
        ]
        args += ["--calls", "4", "--duration", "2", "--budget-ms", "10000"]
        result = CliRunner().invoke(app, [*args, "--report", str(tmp_path / "v.html")])
        scenario = CliRunner().invoke(
            app,
            [
                "simulate",
                "--url",
                state.url,
                "--scenario",
                str(builtin_example("scenarios/event-driven")),
                "--quiet",
                "--json",
                str(tmp_path / "scenario.json"),
            ],
        )
    finally:
        stop_cluster_child(cluster)
    report = load_report(tmp_path / "v.json")
    by_name = {c.name: c for c in report.checks}
    assert by_name[ARCHIVE].passed, by_name[ARCHIVE]
    assert by_name[ESCALATION].passed, by_name[ESCALATION]
    assert by_name[ESCALATION].figures["transfer number"] == "+15550100"
    assert result.exit_code == 0, result.output
    assert scenario.exit_code == 0, (tmp_path / "scenario.json").read_text()

"""``switchboard demo``: the whole product in one command, on a fresh clone, without an API key.

It starts ``switchboard serve`` with the scripted receptionist (profile ``single``) on a
free port, plays the receptionist scenarios and a batch of concurrent random calls
against it with ``switchboard simulate``, prints the summary and verdict, writes the HTML
report, and stops the server. Every piece runs through its own CLI, so a passing demo
also proves the commands a user would type work.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import msgspec
from rich.console import Console

from switchboard.config import builtin_example
from switchboard.sim.processes import free_port, run_simulator, start_server
from switchboard.sim.report import print_summary, write_html, write_json
from switchboard.sim.results import RunReport
from switchboard.sim.verdict import judge

AGENT_FILE = "receptionist.yaml"
SCENARIOS_DIR = "scenarios/receptionist"


class DemoOptions(msgspec.Struct, frozen=True, kw_only=True):
    calls: int = 20
    turns: int = 4
    seed: int = 7
    html_path: Path = Path("reports/demo.html")
    json_path: Path = Path("reports/demo.json")


def run_demo(options: DemoOptions, console: Console, log_dir: Path | None = None) -> RunReport:
    """Run the demo end to end and return the judged report (``passed`` is the exit status)."""
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="switchboard-demo-"))
    port = free_port()
    env = {
        "SWITCHBOARD_PROFILE": "single",
        "SWITCHBOARD_LOG_LEVEL": "warning",
        "SWITCHBOARD_DRAIN_TIMEOUT_S": "2",
        "SWITCHBOARD_MAX_CALLS": str(max(100, options.calls * 2)),
    }
    console.print(f"[dim]demo[/] starting the server on 127.0.0.1:{port} ({AGENT_FILE})")
    server = start_server(
        port=port, agent_file=builtin_example(AGENT_FILE), log_dir=log_dir, env=env
    )
    try:
        console.print(
            f"[dim]demo[/] scenarios from examples/{SCENARIOS_DIR} "
            f"and {options.calls} concurrent random calls"
        )
        _, report = run_simulator(
            simulator_args(options, f"ws://127.0.0.1:{port}/llm-websocket"),
            json_path=log_dir / "demo.json",
            log_dir=log_dir,
            timeout_s=600,
        )
    finally:
        server.stop()
    report = judge(report)
    print_summary(report, console)
    write_json(report, options.json_path)
    write_html(report, options.html_path)
    console.print(f"HTML report: {options.html_path}")
    return report


def simulator_args(options: DemoOptions, url: str) -> list[str]:
    """The ``switchboard simulate`` options for the demo (without ``--json``/``--quiet``)."""
    return [
        "--url",
        url,
        "--scenario",
        str(builtin_example(SCENARIOS_DIR)),
        "--calls",
        str(options.calls),
        "--turns",
        str(options.turns),
        "--profile",
        "single",
        "--seed",
        str(options.seed),
        "--label",
        "demo: receptionist",
    ]

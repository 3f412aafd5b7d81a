"""``switchboard demo``: the whole product in one command, on a fresh clone, without an API key.

It starts ``switchboard serve`` with the scripted receptionist (profile ``single``) on a
free port, plays the receptionist scenarios and a batch of concurrent random calls
against it with ``switchboard simulate``, prints the summary and verdict, writes the HTML
report, and stops the server. Every piece runs through its own CLI, so a passing demo
also proves the commands a user would type work.

With ``profile="distributed"`` it is the failover demo instead: ``switchboard cluster``
with three nodes behind HAProxy, the same scenarios plus longer random calls through the
load balancer, and, once the calls are up, ``kill -9`` of the node that holds the most.
The verdict then also requires every call cut off by the kill to be resumed on another
node, and reports kill -> first answered turn after the reconnect.

With ``profile="event-driven"`` it is the event pipeline demo (demo/event_driven.py): the
cluster with the bus and the services, the escalation scenario and random calls, and a
verdict that also needs the archive and analytics to agree with the simulator.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import msgspec
from rich.console import Console

from switchboard.cluster.failover import kill_busiest_mid_run, summarize
from switchboard.cluster.launch import start_cluster_child, stop_cluster_child
from switchboard.cluster.processes import (
    free_port,
    run_simulator,
    simulator_result,
    start_server,
    start_simulator,
)
from switchboard.config import builtin_example
from switchboard.demo import demo_report_path, event_driven
from switchboard.sim.report import print_summary, write_html, write_json
from switchboard.sim.results import FailoverSummary, RunReport
from switchboard.sim.verdict import judge

AGENT_FILE = "receptionist.yaml"
SCENARIOS_DIR = "scenarios/receptionist"


class DemoOptions(msgspec.Struct, frozen=True, kw_only=True):
    calls: int = 20
    turns: int = 4
    seed: int = 7
    profile: str = "single"
    #: caller pause before each turn; the failover demo's calls must outlast the kill
    think_ms: float = 250.0
    nodes: int = 3
    #: frames for a superseded id this late still count as in flight (``simulate`` default)
    stale_grace_ms: float = 25.0
    html_path: Path = Path("reports/demo-single.html")
    json_path: Path = Path("reports/demo-single.json")


#: The failover demo's defaults: enough turns per call to span the kill.
FAILOVER_CALLS = 30
FAILOVER_TURNS = 12
#: Kill once the calls have answered this many turns each on average (mid-conversation).
KILL_AFTER_TURNS = 1


def demo_options(
    profile: str, *, calls: int | None = None, turns: int | None = None, html: Path | None = None
) -> DemoOptions:
    """The demo of ``profile`` with its defaults (the failover and event demos run more and
    longer calls, so they outlast the kill); the JSON report goes beside the HTML one."""
    single = profile == "single"
    html = html or demo_report_path(profile)
    return DemoOptions(
        calls=calls or (20 if single else FAILOVER_CALLS),
        turns=turns or (4 if single else FAILOVER_TURNS),
        profile=profile,
        html_path=html,
        json_path=html.with_suffix(".json"),
    )


def run_demo(options: DemoOptions, console: Console, log_dir: Path | None = None) -> RunReport:
    """Run the demo end to end and return the judged report (``passed`` is the exit status)."""
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="switchboard-demo-"))
    if options.profile == "event-driven":
        return run_events_demo(options, console, log_dir)
    if options.profile != "single":
        return run_failover_demo(options, console, log_dir)
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
    return _finish(judge(report), options, console)


def _finish(report: RunReport, options: DemoOptions, console: Console) -> RunReport:
    print_summary(report, console)
    write_json(report, options.json_path)
    write_html(report, options.html_path)
    console.print(f"HTML report: {options.html_path}")
    return report


def run_failover_demo(options: DemoOptions, console: Console, log_dir: Path) -> RunReport:
    """The cluster, the calls through HAProxy, ``kill -9`` of the busiest node, the verdict."""
    env = {
        "SWITCHBOARD_LOG_LEVEL": "warning",
        "SWITCHBOARD_DRAIN_TIMEOUT_S": "2",
        "SWITCHBOARD_MAX_CALLS": str(max(100, options.calls * 2)),
    }
    console.print(
        f"[dim]demo[/] starting a {options.nodes}-node {options.profile} cluster "
        "(valkey-server, switchboard serve x N, HAProxy)"
    )
    cluster, state = start_cluster_child(
        nodes=options.nodes,
        log_dir=log_dir,
        profile=options.profile,
        agent_file=builtin_example(AGENT_FILE),
        env=env,
    )
    try:
        console.print(f"[dim]demo[/] cluster up at {state.url} (logs in {state.log_dir})")
        planned = options.calls + len(list(builtin_example(SCENARIOS_DIR).glob("*.yaml")))
        console.print(
            f"[dim]demo[/] scenarios from examples/{SCENARIOS_DIR} and {options.calls} "
            f"concurrent random calls of {options.turns} turns through HAProxy"
        )
        json_path = log_dir / "demo.json"
        simulator = start_simulator(
            simulator_args(options, state.url), json_path=json_path, log_dir=log_dir
        )
        try:
            kill = kill_busiest_mid_run(
                state,
                turns_first=planned * KILL_AFTER_TURNS,
                running=lambda: simulator.poll() is None,
            )
        except BaseException:
            simulator.stop()
            raise
        if kill is not None:
            console.print(
                f"[dim]demo[/] [bold]kill -9[/] {kill.killed_node}, "
                f"which held {kill.calls_on_killed_node} calls"
            )
        _, report = simulator_result(simulator, json_path, timeout_s=600)
    finally:
        stop_cluster_child(cluster)
    if kill is None:  # the verdict says nothing failed over
        kill = FailoverSummary(killed_node="no node", killed_at=time.time(), calls_on_killed_node=0)
    failover = summarize(
        report.reconnect_events,
        killed_node=kill.killed_node,
        killed_at=kill.killed_at,
        calls_on_node=kill.calls_on_killed_node,
    )
    report = msgspec.structs.replace(report, failover=failover)
    return _finish(judge(report), options, console)


def run_events_demo(options: DemoOptions, console: Console, log_dir: Path) -> RunReport:
    """The event-driven cluster, the escalation scenario and random calls, the tally."""
    env = {
        "SWITCHBOARD_LOG_LEVEL": "warning",
        "SWITCHBOARD_DRAIN_TIMEOUT_S": "2",
        "SWITCHBOARD_MAX_CALLS": str(max(100, options.calls * 2)),
    }
    report, tally = event_driven.run_event_demo(
        nodes=options.nodes,
        simulator_args=lambda url: simulator_args(options, url, event_driven.SCENARIOS_DIR),
        env=env,
        console=console,
        log_dir=log_dir,
    )
    report = event_driven.judge_events(judge(report), tally)
    report = _finish(report, options, console)
    event_driven.print_tally(tally, console)
    console.print(f"verdict: {'[green]PASS[/]' if report.passed else '[red]FAIL[/]'}")
    return report


def simulator_args(options: DemoOptions, url: str, scenarios: str = SCENARIOS_DIR) -> list[str]:
    """The ``switchboard simulate`` options for the demo (without ``--json``/``--quiet``)."""
    label = "demo: receptionist"
    if options.profile == "event-driven":
        label = "demo: event-driven"
    elif options.profile != "single":
        label = f"demo: {options.profile} failover"
    return [
        "--url",
        url,
        "--scenario",
        str(builtin_example(scenarios)),
        "--calls",
        str(options.calls),
        "--turns",
        str(options.turns),
        "--think-ms",
        f"{options.think_ms:g}",
        "--stale-grace-ms",
        f"{options.stale_grace_ms:g}",
        "--profile",
        options.profile,
        "--seed",
        str(options.seed),
        "--label",
        label,
    ]

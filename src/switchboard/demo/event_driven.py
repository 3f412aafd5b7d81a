"""``switchboard demo --profile event-driven``: the event pipeline proven end to end.

``switchboard cluster --profile event-driven`` (nodes, the bus, the archive, analytics and
escalation services), the escalation scenario (a caller who asks for a manager twice
gets exactly one handoff line and one transfer, from the escalation service) plus
random calls through HAProxy; then, once the services have caught up, the archive's
rows against the turns the simulator saw. The verdict passes only if they agree: every
turn archived once (none missing, none twice), the analytics totals the same, and one
escalated call.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import msgspec
from rich.console import Console

from switchboard.cluster.launch import start_cluster_child, stop_cluster_child
from switchboard.cluster.plan import ClusterState
from switchboard.cluster.processes import POLL_INTERVAL_S, run_simulator
from switchboard.config import builtin_example
from switchboard.services.archive import open_archive
from switchboard.services.archive import queries as q
from switchboard.sim.results import RunReport

SCENARIOS_DIR = "scenarios/event-driven"
RULES_FILE = "escalation-demo.yaml"
#: calls the escalation scenario hands over
ESCALATIONS = 1


class EventTally(msgspec.Struct, kw_only=True):
    """What the services hold after the run, next to what the simulator saw."""

    simulated_turns: int
    simulated_calls: int
    archived_turns: int = 0
    #: non-greeting, non-superseded turn rows, and how many distinct (call, response id)
    turn_rows: int = 0
    distinct_turns: int = 0
    archived_calls: int = 0
    escalated_calls: int = 0
    analytics_turns: int = -1
    analytics_calls: int = -1
    dashboard_url: str = ""
    archive_db: str = ""

    @property
    def caught_up(self) -> bool:
        return (
            self.archived_turns >= self.simulated_turns
            and self.archived_calls >= self.simulated_calls
            and self.analytics_turns >= self.simulated_turns
            and self.escalated_calls >= ESCALATIONS
        )

    def disagreements(self) -> list[str]:
        """Each way the services disagree with the simulator (empty: they agree)."""
        out = []
        if self.archived_turns != self.simulated_turns:
            out.append(f"archive has {self.archived_turns} turns, simulator {self.simulated_turns}")
        if self.turn_rows != self.distinct_turns:
            out.append(f"{self.turn_rows - self.distinct_turns} turns archived twice")
        if self.archived_calls != self.simulated_calls:
            out.append(f"archive has {self.archived_calls} calls, simulator {self.simulated_calls}")
        if self.analytics_turns != self.simulated_turns:
            out.append(f"analytics counts {self.analytics_turns} turns")
        if self.analytics_calls != self.simulated_calls:
            out.append(f"analytics counts {self.analytics_calls} calls")
        if self.escalated_calls != ESCALATIONS:
            out.append(f"{self.escalated_calls} escalated calls, expected {ESCALATIONS}")
        return out


def tally(state: ClusterState, report: RunReport) -> EventTally:
    """Read the archive and the analytics totals once."""
    if state.archive_db is None or state.dashboard_url is None:
        raise ValueError("not an event-driven cluster: its state has no archive or dashboard")
    result = EventTally(
        simulated_turns=report.turns,
        simulated_calls=report.calls_started,
        dashboard_url=state.dashboard_url,
        archive_db=state.archive_db,
    )
    if Path(state.archive_db).exists():
        asyncio.run(_read_archive(state.archive_db, result))
    try:
        with httpx.Client(timeout=5.0, trust_env=False) as client:
            totals = client.get(f"{state.dashboard_url}api/summary").json()["totals"]
        result.analytics_turns = int(totals["turns"])
        result.analytics_calls = int(totals["calls_started"])
    except (httpx.HTTPError, ValueError, KeyError):
        pass
    return result


async def _read_archive(url: str, into: EventTally) -> None:
    archive = await open_archive(url)
    try:
        stats = await q.stats(archive)
        into.archived_turns = stats.turns
        into.archived_calls = stats.calls
        rows = await archive.fetch(
            "SELECT COUNT(*), COUNT(DISTINCT call_id || ':' || response_id) FROM turns"
            " WHERE kind <> 'greeting' AND superseded = 0"
        )
        into.turn_rows, into.distinct_turns = int(rows[0][0]), int(rows[0][1])
        escalated = await archive.fetch(
            "SELECT COUNT(*) FROM calls WHERE escalated_rule IS NOT NULL"
        )
        into.escalated_calls = int(escalated[0][0])
    finally:
        await archive.close()


def wait_caught_up(state: ClusterState, report: RunReport, deadline_s: float = 120.0) -> EventTally:
    """Poll until the services hold everything the simulator saw, or the deadline (then
    the tally says what is missing)."""
    deadline = time.monotonic() + deadline_s
    while True:
        result = tally(state, report)
        if result.caught_up or time.monotonic() > deadline:
            return result
        time.sleep(POLL_INTERVAL_S)


def judge_events(report: RunReport, result: EventTally) -> RunReport:
    """``report`` failed as well when the services disagree with the simulator."""
    reasons = [f"events: {d}." for d in result.disagreements()]
    if not reasons:
        return report
    return msgspec.structs.replace(
        report, passed=False, verdict_reasons=[*report.verdict_reasons, *reasons]
    )


def print_tally(result: EventTally, console: Console) -> None:
    agree = "[green]agree[/]" if not result.disagreements() else "[red]disagree[/]"
    console.print(f"[bold]Events[/]: the archive and the simulator {agree}")
    console.print(
        f"  simulator: {result.simulated_turns} turns in {result.simulated_calls} calls\n"
        f"  archive:   {result.archived_turns} turns ({result.turn_rows - result.distinct_turns}"
        f" twice) in {result.archived_calls} calls, {result.escalated_calls} escalated\n"
        f"  read it:   switchboard archive stats --db {result.archive_db}\n"
        f"  analytics: {result.analytics_turns} turns in {result.analytics_calls} calls\n"
        f"  dashboard: {result.dashboard_url} (live while the cluster ran)",
        soft_wrap=True,  # paths and URLs stay whole, to copy
    )


def run_event_demo(
    *,
    nodes: int,
    simulator_args: Callable[[str], list[str]],
    env: dict[str, str],
    console: Console,
    log_dir: Path,
    bus: str = "kafka",
) -> tuple[RunReport, EventTally]:
    """The cluster, the simulator through it, the services' tally; the cluster is stopped
    on return. ``simulator_args(url)``: the simulator's options, from demo.py."""
    console.print(
        f"[dim]demo[/] starting a {nodes}-node event-driven cluster (valkey-server, the "
        f"{bus} bus, archive, analytics and escalation services, switchboard serve x N, HAProxy)"
    )
    cluster, state = start_cluster_child(
        nodes=nodes,
        log_dir=log_dir,
        profile="event-driven",
        agent_file=builtin_example("receptionist.yaml"),
        env=env,
        extra_args=["--bus", bus, "--escalation-rules", str(builtin_example(RULES_FILE))],
    )
    try:
        console.print(f"[dim]demo[/] cluster up at {state.url} (logs in {state.log_dir})")
        console.print(f"[dim]demo[/] dashboard: {state.dashboard_url}")
        _, report = run_simulator(
            simulator_args(state.url),
            json_path=log_dir / "demo.json",
            log_dir=log_dir,
            timeout_s=600,
        )
        console.print("[dim]demo[/] waiting for the archive and analytics to catch up")
        result = wait_caught_up(state, report)
    finally:
        stop_cluster_child(cluster)
    return report, result

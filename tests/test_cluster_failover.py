"""``kill -9`` of one of three distributed nodes under 30+ concurrent calls through HAProxy.

Real processes throughout: valkey-server, three ``switchboard serve --profile
distributed`` nodes, HAProxy, and the simulator playing Retell (reconnect after 1006).
Every call must complete, none may be greeted twice, and the booking scenarios, whose
replies repeat the slots filled in ``state`` earlier in the call, must pass even when
their node dies between two of their turns.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator

import msgspec
import pytest

from switchboard.cluster.failover import kill_busiest_mid_run, summarize
from switchboard.cluster.plan import ClusterState
from switchboard.config import builtin_example
from switchboard.sim.results import FailoverSummary, RunReport
from switchboard.sim.runner import Simulation
from switchboard.sim.scenario import Scenario, load_scenarios
from switchboard.sim.verdict import judge
from tests.fixtures.broken_servers import fast_options
from tests.fixtures.cluster import running_cluster

PROFILE = "distributed"
BOOKINGS = 10
RANDOM_CALLS = 24
KILL_DEADLINE_S = 30.0
UNTIMED_MS = 1e9


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterState]:
    with running_cluster(tmp_path_factory.mktemp("failover"), nodes=3, profile=PROFILE) as (
        _,
        state,
    ):
        yield state


def bookings(count: int) -> list[Scenario]:
    (booking,) = [
        s for s in load_scenarios(builtin_example("scenarios/receptionist")) if s.name == "booking"
    ]
    return [dataclasses.replace(booking, name=f"booking-{i}") for i in range(1, count + 1)]


async def run_with_kill(state: ClusterState) -> tuple[RunReport, FailoverSummary]:
    options = fast_options(
        state.url,
        calls=RANDOM_CALLS,
        turns=8,
        think_ms=250.0,
        ping_interval_s=0.5,
        profile=PROFILE,
    )
    simulation = Simulation(options, bookings(BOOKINGS))
    run = asyncio.create_task(simulation.run())
    calls = BOOKINGS + RANDOM_CALLS
    try:
        # Mid-conversation: every booking has slots filled when its node dies.
        kill = await asyncio.to_thread(
            kill_busiest_mid_run,
            state,
            turns_first=calls,
            running=lambda: not run.done(),
            deadline_s=KILL_DEADLINE_S,
        )
    except BaseException:
        simulation.stop()
        await run
        raise
    report = await run
    assert kill is not None, "the run ended before the kill"
    summary = summarize(
        report.reconnect_events,
        killed_node=kill.killed_node,
        killed_at=kill.killed_at,
        calls_on_node=kill.calls_on_killed_node,
    )
    return report, summary


async def test_kill_9_of_a_node_under_load_loses_no_call_and_no_state(
    cluster: ClusterState,
) -> None:
    report, failover = await run_with_kill(cluster)

    assert report.calls_started == BOOKINGS + RANDOM_CALLS
    assert report.calls_failed == {}
    assert report.calls_completed == report.calls_started
    assert report.violations == {}, report.violation_samples  # no repeated_greeting
    failed = {s.name: s.failures for s in report.scenarios if not s.passed}
    assert failed == {}  # slot-filled state survived the node
    assert failover.calls_on_killed_node >= 1
    assert failover.calls_lost_socket >= 1
    assert report.reconnects_by_cause.get("abnormal", 0) >= failover.calls_lost_socket
    # The failover verdict, without the latency budget: tests never judge timings.
    verdict = judge(msgspec.structs.replace(report, failover=failover, budget_ms=UNTIMED_MS))
    assert verdict.verdict_reasons == []
    assert failover.kill_to_answer.count == failover.sockets_lost

"""The failover decisions without a cluster: which node to kill, which reconnects the kill
caused, kill -> first answered turn, and the verdict on a run with a kill."""

from __future__ import annotations

import msgspec
from typer.testing import CliRunner

from switchboard.cli import app
from switchboard.cluster.failover import busiest, summarize
from switchboard.sim.results import FailoverSummary, ReconnectEvent
from switchboard.sim.verdict import judge
from tests.test_verdict import passing_report

KILLED_AT = 1_000.0


def event(
    call_id: str, lost_at: float, answered_at: float | None, empty: bool | None = True
) -> ReconnectEvent:
    return ReconnectEvent(
        call_id=call_id,
        cause="abnormal",
        lost_at=lost_at,
        reopened_at=None if answered_at is None else lost_at + 0.01,
        begin_empty=empty,
        answered_at=answered_at,
    )


def test_the_busiest_node_is_killed_and_ties_go_to_the_first_name() -> None:
    assert busiest({"node-1": 3, "node-2": 7, "node-3": 5}) == "node-2"
    assert busiest({"node-2": 4, "node-1": 4}) == "node-1"
    assert busiest({}) is None


def test_only_sockets_lost_after_the_kill_count_and_times_run_from_the_kill() -> None:
    events = [
        event("earlier", KILLED_AT - 5, KILLED_AT - 4),  # an unrelated drop before the kill
        event("a", KILLED_AT + 0.001, KILLED_AT + 0.200),
        event("b", KILLED_AT + 0.002, KILLED_AT + 0.400),
        event("b", KILLED_AT + 0.500, KILLED_AT + 0.700),  # the same call dropped twice
        event("c", KILLED_AT + 0.003, None),  # never answered again
        event("d", KILLED_AT + 0.004, KILLED_AT + 0.300, empty=False),  # greeted again
    ]
    summary = summarize(events, killed_node="node-2", killed_at=KILLED_AT, calls_on_node=4)

    assert summary.sockets_lost == 5
    assert summary.calls_lost_socket == 4
    assert summary.calls_resumed == 2  # a and b
    assert summary.kill_to_answer.count == 4
    assert 199 <= summary.kill_to_answer.p50_ms <= 401
    assert 699 <= summary.kill_to_answer.max_ms <= 701


def test_a_run_with_a_kill_passes_only_if_every_cut_off_call_resumed() -> None:
    good = FailoverSummary(
        killed_node="node-1",
        killed_at=KILLED_AT,
        calls_on_killed_node=3,
        sockets_lost=3,
        calls_lost_socket=3,
        calls_resumed=3,
    )
    assert judge(msgspec.structs.replace(passing_report(), failover=good)).passed

    partial = msgspec.structs.replace(good, calls_resumed=2)
    verdict = judge(msgspec.structs.replace(passing_report(), failover=partial))
    assert not verdict.passed
    assert any("1 call of 3 cut off by the kill not resumed" in r for r in verdict.verdict_reasons)

    idle = msgspec.structs.replace(
        good, calls_on_killed_node=0, calls_lost_socket=0, calls_resumed=0
    )
    verdict = judge(msgspec.structs.replace(passing_report(), failover=idle))
    assert not verdict.passed
    assert any("cut no call off" in r for r in verdict.verdict_reasons)


def test_cluster_and_demo_refuse_an_unknown_profile() -> None:
    runner = CliRunner()
    for command in (["cluster"], ["demo"]):
        result = runner.invoke(app, [*command, "--profile", "galactic"])
        assert result.exit_code == 2
        assert "profile must be one of" in result.output


def test_bench_targets_relative_to_another_case_of_the_same_run() -> None:
    from switchboard.bench.cases import DEFAULT_CASES
    from switchboard.bench.judge import missed_targets
    from tests.test_verdict import kind

    cases = {c.name: c for c in DEFAULT_CASES}
    single = passing_report(turns_per_core_s=2000.0)
    distributed = cases["distributed-100"]
    behind_lb = cases["distributed-haproxy-100"]
    failover = cases["failover-3x"]

    fast_enough = passing_report(turns_per_core_s=1600.0, per_kind=[kind("response", [1.0] * 100)])
    assert missed_targets(distributed, fast_enough, {"scripted-100": single}) == []
    too_slow = msgspec.structs.replace(fast_enough, turns_per_core_s=1400.0)
    (missed,) = missed_targets(distributed, too_slow, {"scripted-100": single})
    assert "70% of scripted-100's < target 75%" in missed
    (missed,) = missed_targets(distributed, fast_enough, {})  # reference not run: missed
    assert "unknown" in missed

    direct = passing_report(per_kind=[kind("response", [1.0] * 100)])
    within = passing_report(per_kind=[kind("response", [1.8] * 100)])
    over = passing_report(per_kind=[kind("response", [2.5] * 100)])
    assert missed_targets(behind_lb, within, {"distributed-100": direct}) == []
    (missed,) = missed_targets(behind_lb, over, {"distributed-100": direct})
    assert "+1.50 ms over distributed-100's" in missed

    recovered = FailoverSummary(
        killed_node="node-1",
        killed_at=KILLED_AT,
        calls_on_killed_node=3,
        kill_to_answer=summarize(
            [event("a", KILLED_AT + 0.01, KILLED_AT + 0.3)],
            killed_node="node-1",
            killed_at=KILLED_AT,
            calls_on_node=3,
        ).kill_to_answer,
    )
    assert missed_targets(failover, passing_report(failover=recovered)) == []
    (missed,) = missed_targets(failover, passing_report())
    assert "kill -> first answered turn p99 unknown" in missed

"""The pass/fail rule: each failure reason alone fails a run; saturation only warns."""

from __future__ import annotations

import math

import msgspec
import pytest

from switchboard.sim.results import (
    LatencySummary,
    ProcessStats,
    RunReport,
    ScenarioResult,
    TurnKindStats,
)
from switchboard.sim.verdict import judge


def summary(values: list[float]) -> LatencySummary:
    """A LatencySummary computed exactly from samples, the way a test can check by eye."""
    if not values:
        return LatencySummary()
    ordered = sorted(values)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(p * len(ordered)) - 1))]

    bounds = sorted({math.ceil(v) for v in ordered})
    return LatencySummary(
        count=len(ordered),
        min_ms=ordered[0],
        mean_ms=sum(ordered) / len(ordered),
        p50_ms=pct(0.5),
        p90_ms=pct(0.9),
        p95_ms=pct(0.95),
        p99_ms=pct(0.99),
        p999_ms=pct(0.999),
        max_ms=ordered[-1],
        cdf=[(v, (i + 1) / len(ordered)) for i, v in enumerate(ordered)],
        buckets=[(float(b), sum(1 for v in ordered if b - 1 < v <= b)) for b in bounds],
    )


def kind(name: str, ttfb: list[float]) -> TurnKindStats:
    return TurnKindStats(
        kind=name, turns=len(ttfb), ttfb=summary(ttfb), ttc=summary([v * 3 for v in ttfb])
    )


def passing_report(**changes: object) -> RunReport:
    """A healthy run: 20 calls, fast turns, every scenario passed, an idle simulator."""
    report = RunReport(
        label="receptionist demo",
        url="ws://127.0.0.1:9/llm-websocket",
        started_at="2025-01-01T00:00:00Z",
        duration_s=12.5,
        profile="single",
        budget_ms=800,
        options={"calls": 20, "turns": 5},
        calls_started=20,
        calls_completed=20,
        turns=120,
        turns_per_s=9.6,
        per_kind=[
            kind("greeting", [1.0 + i / 10 for i in range(20)]),
            kind("response", [2.0 + (i % 17) for i in range(80)]),
            kind("barge_in", [3.0 + (i % 5) for i in range(20)]),
        ],
        connect=summary([0.5, 0.7, 0.9]),
        greeting=summary([1.0, 1.5]),
        pong_rtt=summary([0.2, 0.3]),
        scenarios=[ScenarioResult(name="books-appointment", passed=True)],
        client=ProcessStats(cpu_seconds=2.0, cpu_percent=16.0, loop_lag=summary([0.1, 0.4])),
    )
    return msgspec.structs.replace(report, **changes)


def test_healthy_run_passes_without_reasons_or_warnings() -> None:
    judged = judge(passing_report())
    assert judged.passed
    assert judged.verdict_reasons == []
    assert judged.verdict_warnings == []


def test_judge_leaves_the_input_report_untouched() -> None:
    report = passing_report(violations={"stale_frame": 1})
    judge(report)
    assert report.verdict_reasons == []
    assert not report.passed


def test_any_violation_fails_the_run_and_names_its_kind() -> None:
    judged = judge(passing_report(violations={"stale_frame": 2, "no_pong": 1}))
    assert not judged.passed
    assert len(judged.verdict_reasons) == 1
    assert "3 protocol violations" in judged.verdict_reasons[0]
    assert "stale_frame x2" in judged.verdict_reasons[0]


def test_any_failed_call_fails_the_run_with_its_reason() -> None:
    judged = judge(passing_report(calls_completed=19, calls_failed={"error_llm_websocket_open": 1}))
    assert not judged.passed
    assert judged.verdict_reasons == ["1 call of 20 failed (error_llm_websocket_open x1)."]


def test_a_failed_scenario_fails_the_run_and_is_named() -> None:
    scenarios = [
        ScenarioResult(name="books-appointment", passed=True),
        ScenarioResult(name="transfers-to-human", passed=False, failures=["no transfer"]),
    ]
    judged = judge(passing_report(scenarios=scenarios))
    assert not judged.passed
    assert "transfers-to-human" in judged.verdict_reasons[0]
    assert "books-appointment" not in judged.verdict_reasons[0]


@pytest.mark.parametrize("slow_kind", ["response", "barge_in"])
def test_ttfb_p99_over_budget_fails_for_judged_kinds(slow_kind: str) -> None:
    report = passing_report()
    per_kind = [
        kind(k.kind, [900.0] * 10 + [5.0] * 90) if k.kind == slow_kind else k
        for k in report.per_kind
    ]
    judged = judge(msgspec.structs.replace(report, per_kind=per_kind))
    assert not judged.passed
    assert judged.verdict_reasons == [f"{slow_kind} TTFB p99 is 900.0 ms, over the 800 ms budget."]


def test_p99_exactly_at_budget_passes() -> None:
    report = passing_report(budget_ms=18)  # response TTFB max is 2 + 16 = 18 ms
    assert judge(report).passed


@pytest.mark.parametrize("slow_kind", ["greeting", "reminder"])
def test_greetings_and_reminders_are_not_held_to_the_budget(slow_kind: str) -> None:
    report = passing_report()
    judged = judge(
        msgspec.structs.replace(report, per_kind=[*report.per_kind, kind(slow_kind, [5000.0])])
    )
    assert judged.passed


def test_a_run_without_response_turns_fails() -> None:
    judged = judge(passing_report(per_kind=[kind("greeting", [1.0])]))
    assert not judged.passed
    assert "No response or barge-in turns" in judged.verdict_reasons[0]


def test_every_failure_reason_is_listed_at_once() -> None:
    judged = judge(
        passing_report(
            violations={"stale_frame": 1},
            calls_failed={"error_llm_websocket_lost_connection": 1},
            scenarios=[ScenarioResult(name="s", passed=False)],
            budget_ms=1,
        )
    )
    assert len(judged.verdict_reasons) == 5  # violation, call, scenario, response, barge_in


def test_busy_simulator_cpu_warns_but_does_not_fail() -> None:
    judged = judge(passing_report(client=ProcessStats(cpu_seconds=12.0, cpu_percent=97.0)))
    assert judged.passed
    assert len(judged.verdict_warnings) == 1
    assert "97% of a core" in judged.verdict_warnings[0]


def test_event_loop_lag_warns_but_does_not_fail() -> None:
    lagging = ProcessStats(cpu_percent=40.0, loop_lag=summary([1.0] * 98 + [80.0, 90.0]))
    judged = judge(passing_report(client=lagging))
    assert judged.passed
    assert "loop lag p99 was 80.0 ms" in judged.verdict_warnings[0]


def test_a_failing_run_also_keeps_its_warnings_apart() -> None:
    judged = judge(
        passing_report(violations={"binary_frame": 1}, client=ProcessStats(cpu_percent=100.0))
    )
    assert not judged.passed
    assert len(judged.verdict_reasons) == 1
    assert len(judged.verdict_warnings) == 1
    assert "simulator" in judged.verdict_warnings[0]


def test_unfinished_calls_are_flagged_as_a_warning() -> None:
    judged = judge(passing_report(calls_completed=18))
    assert judged.passed
    assert judged.verdict_warnings == ["2 calls neither completed nor failed."]

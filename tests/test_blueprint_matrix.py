"""The decision matrix and the capacity arithmetic, as pure functions."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from switchboard.blueprint.capacity import (
    Calibration,
    CalibrationError,
    Measurement,
    default_calibration,
    measurements_from_bench,
    node_capacity,
    reference_calibration,
)
from switchboard.blueprint.matrix import (
    Decision,
    InputError,
    Inputs,
    budget_factor,
    calls_factor,
    decide,
)
from switchboard.blueprint.model import build_deployment

REPO = Path(__file__).resolve().parents[1]


def measurement(
    name: str = "m", p99: float = 5.0, per_core: float = 800.0, cpu: float = 0.5
) -> Measurement:
    return Measurement(
        name=name,
        agent="openai",
        calls=100,
        turns_per_s=per_core * cpu,
        turns_per_core_s=per_core,
        cpu_fraction=cpu,
        ttfb_p99_ms=p99,
    )


def calibration(*ms: Measurement) -> Calibration:
    return Calibration(source="test", measurements=ms or (measurement(),))


def plan(calls: int, budget: float, cap: int = 200, **kw: Any) -> Decision:
    capacity = node_capacity(calibration(), budget_ms=budget, max_calls_per_node=cap)
    return decide(Inputs(calls=calls, budget_ms=budget, **kw), capacity)


@pytest.mark.parametrize(
    ("calls", "profile"),
    [
        (1, "single"),
        (9, "single"),
        (10, "distributed"),
        (100, "distributed"),
        (101, "event-driven"),
    ],
)
def test_calls_rows_have_their_edges_where_the_matrix_puts_them(calls: int, profile: str) -> None:
    assert calls_factor(calls).profile == profile


@pytest.mark.parametrize(
    ("budget", "profile"),
    [
        (2000, "single"),
        (800, "single"),
        (799, "distributed"),
        (500, "distributed"),
        (499, "event-driven"),
        (300, "event-driven"),
    ],
)
def test_budget_rows(budget: float, profile: str) -> None:
    assert budget_factor(budget).profile == profile


def test_the_most_demanding_factor_decides_and_says_what_would_change_it() -> None:
    d = plan(50, 800)
    assert d.profile == "distributed"
    calls = d.factors[0]
    assert calls.row == "10-100"
    assert "fewer than 10" in calls.change
    assert [f.name for f in d.deciding] == ["concurrent calls"]


def test_analytics_needs_the_event_bus_even_for_a_few_calls() -> None:
    d = plan(3, 800, analytics=True)
    assert d.profile == "event-driven"
    assert d.state == "Redis + events"
    assert d.nodes >= 2


def test_many_calls_with_a_loose_budget_warn_and_plan_the_larger_profile() -> None:
    d = plan(200, 800, nodes=1)
    assert d.profile == "event-driven"
    text = " ".join(d.warnings)
    assert "200 calls with a budget of 800 ms" in text
    assert "1 node(s) cannot carry 200 calls" in text
    assert d.nodes == 2  # one for the calls, one spare


def test_a_budget_the_llm_cannot_meet_turns_the_cache_on_and_names_the_nearest_budget() -> None:
    d = plan(20, 500, llm_ttft_ms=700)
    assert d.cache
    assert any("nearest sound plan" in w and "705 ms" in w for w in d.warnings)


def test_a_budget_below_every_row_is_planned_at_the_tightest_row() -> None:
    d = plan(20, 100)
    assert d.profile == "event-driven"
    assert d.budget_ms == 300
    assert d.cache


def test_a_smaller_profile_asked_for_is_refused_with_the_nearest_sound_plan() -> None:
    d = plan(50, 500, profile="single")
    assert d.profile == "distributed"
    assert any("--profile single cannot carry" in w for w in d.warnings)


def test_a_larger_profile_asked_for_is_honoured() -> None:
    d = plan(5, 800, profile="distributed")
    assert (d.profile, d.nodes) == ("distributed", 2)


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"calls": -1, "budget_ms": 800}, "--calls"),
        ({"calls": 0, "budget_ms": 800}, "--calls"),
        ({"calls": 5, "budget_ms": 0}, "--budget-ms"),
        ({"calls": 5, "budget_ms": float("nan")}, "--budget-ms"),
        ({"calls": 5, "budget_ms": 800, "llm_ttft_ms": -1}, "--llm-ttft-ms"),
        ({"calls": 5, "budget_ms": 800, "profile": "huge"}, "unknown profile"),
    ],
)
def test_nonsense_inputs_are_refused_in_one_line(kw: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        Inputs(**kw)  # type: ignore[arg-type]
    assert "\n" not in str(info.value)


def test_capacity_uses_the_fastest_case_that_fits_the_budget() -> None:
    fast = measurement("light", p99=5, per_core=800, cpu=0.4)
    heavy = measurement("heavy", p99=600, per_core=850, cpu=0.95)
    tight = node_capacity(calibration(fast, heavy), budget_ms=500, max_calls_per_node=10_000)
    assert tight.basis == fast
    assert tight.rate_turns_per_s == pytest.approx(800 * 0.4)
    assert tight.measured_calls == int(800 * 0.4 * 5)
    loose = node_capacity(calibration(fast, heavy), budget_ms=800, max_calls_per_node=10_000)
    assert loose.basis == heavy
    # loaded no further than 60 % of a core, even where the bench went further
    assert loose.rate_turns_per_s == pytest.approx(850 * 0.6)


def test_the_llm_ttft_counts_against_the_budget() -> None:
    cap = node_capacity(calibration(measurement(p99=50)), budget_ms=500, llm_ttft_ms=480)
    assert cap.basis is None
    assert "no measured case keeps" in cap.notes[0]


def test_blast_radius_caps_calls_per_node_and_one_node_is_spare() -> None:
    cap = node_capacity(calibration(), budget_ms=800, max_calls_per_node=50)
    assert cap.calls_per_node == 50
    assert cap.nodes_for(120, spare=True) == 4
    assert cap.nodes_for(120, spare=False) == 3


def test_autoscaler_target_leaves_room_for_a_lost_pod() -> None:
    capacity = node_capacity(calibration(), budget_ms=300, max_calls_per_node=60)
    d = build_deployment(decide(Inputs(calls=150, budget_ms=300), capacity))
    assert d.nodes == 4
    assert d.autoscale is not None
    a = d.autoscale
    assert a.min_replicas == 4
    assert a.target_calls_per_pod * (d.nodes - 1) <= 60 * (d.nodes - 1)
    assert a.target_calls_per_pod * d.nodes <= 60 * (d.nodes - 1)
    assert a.max_replicas > a.min_replicas


def test_durations_nest_longest_call_drain_grace_tunnel() -> None:
    d = build_deployment(plan(50, 500), longest_call_s=1800)
    assert 1800 < d.drain_timeout_s < d.grace_period_s
    assert d.tunnel_timeout_s > d.drain_timeout_s


def test_the_reference_bench_file_calibrates() -> None:
    cal = reference_calibration()
    names = {m.name for m in cal.measurements}
    assert {"openai-0ms-100", "openai-0ms-300"} <= names
    assert "shipped" in cal.source


def test_an_unreadable_bench_file_is_a_calibration_error(tmp_path: Path) -> None:
    bad = tmp_path / "latest.json"
    bad.write_text("{not json")
    with pytest.raises(CalibrationError, match="cannot read"):
        measurements_from_bench(bad)
    # a working directory without bench results falls back to the shipped figures
    assert default_calibration(tmp_path).source == reference_calibration().source
    # one with its own last run uses it, and a broken one is an error, not a silent fallback
    (tmp_path / "bench" / "results").mkdir(parents=True)
    (tmp_path / "bench" / "results" / "latest.json").write_text("{not json")
    with pytest.raises(CalibrationError, match="cannot read"):
        default_calibration(tmp_path)


@pytest.mark.system
def test_calibrate_measures_a_local_node(tmp_path: Path) -> None:
    from rich.console import Console

    from switchboard.blueprint.calibrate import calibrate

    cal = calibrate(
        Console(file=open(os.devnull, "w")),  # noqa: SIM115
        duration_s=1.0,
        loads=(4,),
        results_dir=tmp_path,
    )
    (m,) = cal.measurements
    assert m.agent == "openai"
    assert m.calls == 4
    assert m.turns_per_core_s > 0
    assert m.cpu_fraction > 0
    assert (tmp_path / "latest.json").is_file()
    cap = node_capacity(cal, budget_ms=10_000)
    assert cap.calls_per_node >= 1

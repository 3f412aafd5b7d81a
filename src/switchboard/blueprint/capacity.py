"""How many calls one node carries within a latency budget, from measured figures.

A node is one ``switchboard serve`` process, so it uses at most one core. What a core
buys is measured by ``make bench`` (or ``switchboard blueprint --calibrate``): turns per
second of server CPU, and the TTFB p99 at that load. The arithmetic, kept pure:

- a measured case is *admissible* when its TTFB p99 plus the LLM's time to first token
  fits the budget (the bench's fake LLM answers at once, so its p99 is the node's own);
- a node is loaded no further than the admissible case was, and never past
  ``TARGET_UTILISATION`` of its core: ``rate = turns_per_core_s * min(util, case util)``;
- a live call asks for one turn every ``turn_interval_s`` (a caller speaks, then listens),
  so ``measured calls = rate * turn_interval_s``;
- ``calls_per_node`` is that, capped by the blast radius (``max_calls_per_node``): the
  calls one node's loss sends reconnecting at once;
- a multi-node plan adds one node, so the remaining nodes carry every call when one is
  lost: ``nodes = ceil(calls / calls_per_node) + 1``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from switchboard.sim.verdict import JUDGED_KINDS

#: The share of its core a node is planned to use at most, so bursts and GC fit.
TARGET_UTILISATION = 0.6
#: Seconds between two turns of one live call (a caller speaks, hears the reply, speaks).
DEFAULT_TURN_INTERVAL_S = 5.0
#: Calls one node may hold: its loss sends this many reconnects to the others at once.
DEFAULT_MAX_CALLS_PER_NODE = 200
#: Where ``make bench`` leaves its last run, relative to the directory blueprint runs in.
LATEST_BENCH = Path("bench/results/latest.json")
#: A full ``make bench`` run shipped inside the package, so blueprint works from anywhere.
REFERENCE_BENCH = "data/reference.json"


class CalibrationError(ValueError):
    """No usable calibration: a missing or unreadable bench file, or no measured case."""


@dataclass(frozen=True, slots=True)
class Measurement:
    """One measured load: what a node sustained and how fast it answered."""

    name: str
    agent: str
    calls: int
    turns_per_s: float
    turns_per_core_s: float
    #: server CPU over the run, as a fraction of one core
    cpu_fraction: float
    ttfb_p99_ms: float


@dataclass(frozen=True, slots=True)
class Calibration:
    source: str
    measurements: tuple[Measurement, ...]


@dataclass(frozen=True, slots=True)
class Capacity:
    """The arithmetic of one plan, every step kept so SUMMARY.md can show it."""

    budget_ms: float
    llm_ttft_ms: float
    turn_interval_s: float
    max_calls_per_node: int
    #: the case the rate comes from (``None``: no case fits the budget)
    basis: Measurement | None
    #: the node's own TTFB p99 in the case used (with or without a fitting basis)
    node_p99_ms: float
    rate_turns_per_s: float
    measured_calls: int
    calls_per_node: int
    notes: tuple[str, ...] = field(default_factory=tuple)

    def nodes_for(self, calls: int, *, spare: bool) -> int:
        """Nodes for ``calls`` concurrent calls, plus one spare when asked (N+1)."""
        base = max(1, math.ceil(calls / self.calls_per_node))
        return base + 1 if spare else base


def node_capacity(
    calibration: Calibration,
    *,
    budget_ms: float,
    llm_ttft_ms: float = 0.0,
    agent: str | None = None,
    turn_interval_s: float = DEFAULT_TURN_INTERVAL_S,
    max_calls_per_node: int = DEFAULT_MAX_CALLS_PER_NODE,
) -> Capacity:
    """Calls per node within ``budget_ms`` with the LLM's ``llm_ttft_ms`` on top."""
    if budget_ms <= 0 or turn_interval_s <= 0 or max_calls_per_node < 1:
        raise ValueError("budget, turn interval and per-node cap must be positive")
    pool = [m for m in calibration.measurements if agent is None or m.agent == agent]
    notes: list[str] = []
    if not pool:
        pool = list(calibration.measurements)
        if agent is not None:
            notes.append(f"no {agent} case in {calibration.source}; using every case")
    if not pool:
        raise CalibrationError(f"{calibration.source} has no measured case")
    admissible = [m for m in pool if m.ttfb_p99_ms + llm_ttft_ms <= budget_ms]
    if not admissible:
        best = min(pool, key=lambda m: m.ttfb_p99_ms)
        notes.append(
            f"no measured case keeps TTFB p99 + LLM TTFT within {budget_ms:g} ms "
            f"(best: {best.name}, {best.ttfb_p99_ms:.1f} + {llm_ttft_ms:g} ms); "
            "the node count assumes the best one"
        )
        admissible = [best]
    basis = max(admissible, key=_safe_rate)
    rate = _safe_rate(basis)
    measured = max(1, math.floor(rate * turn_interval_s))
    per_node = min(measured, max_calls_per_node)
    return Capacity(
        budget_ms=budget_ms,
        llm_ttft_ms=llm_ttft_ms,
        turn_interval_s=turn_interval_s,
        max_calls_per_node=max_calls_per_node,
        basis=basis if basis.ttfb_p99_ms + llm_ttft_ms <= budget_ms else None,
        node_p99_ms=basis.ttfb_p99_ms,
        rate_turns_per_s=round(rate, 1),
        measured_calls=measured,
        calls_per_node=per_node,
        notes=tuple(notes),
    )


def _safe_rate(m: Measurement) -> float:
    return m.turns_per_core_s * min(TARGET_UTILISATION, m.cpu_fraction)


def measurements_from_bench(path: Path, source: str | None = None) -> Calibration:
    """The sound cases of a ``make bench`` JSON file as measurements: no failed call and no
    violation. A case judged slow is kept: its p99 is the measurement (it fits fewer budgets).
    ``source`` names the figures for the reader (default: the path)."""
    from msgspec import DecodeError, ValidationError

    from switchboard.bench.results import load_bench

    try:
        run = load_bench(path)
    except (OSError, DecodeError, ValidationError) as exc:
        raise CalibrationError(f"cannot read bench results {path}: {exc}") from None
    found = []
    for result in run.results:
        r = result.report
        p99s = [k.ttfb.p99_ms for k in r.per_kind if k.kind in JUDGED_KINDS and k.ttfb.count]
        broken = sum(r.calls_failed.values()) or sum(r.violations.values())
        # a node killed mid-run measures recovery, not what a node sustains
        if result.case.failover or broken or not p99s:
            continue
        if not r.turns_per_core_s or r.server is None:
            continue
        found.append(
            Measurement(
                name=result.case.name,
                agent=result.case.agent,
                calls=result.case.calls,
                turns_per_s=r.turns_per_s,
                turns_per_core_s=r.turns_per_core_s,
                cpu_fraction=r.server.cpu_percent / 100.0,
                ttfb_p99_ms=max(p99s),
            )
        )
    if not found:
        raise CalibrationError(f"{path} has no sound case with server CPU figures")
    return Calibration(source=source or str(path), measurements=tuple(found))


def default_calibration(root: Path = Path(".")) -> Calibration:
    """This machine's last ``make bench`` run when there is one under ``root``, else the
    reference run shipped with the package; the calibration's source says which."""
    latest = root / LATEST_BENCH
    if latest.is_file():
        return measurements_from_bench(latest)
    return reference_calibration()


def reference_calibration() -> Calibration:
    """The reference figures shipped in the package: a 2-core x86_64 machine, server pinned to
    one core (docs/benchmarks.md). ``--calibrate`` measures the machine at hand instead."""
    from switchboard import __version__

    ref = resources.files("switchboard.blueprint").joinpath(REFERENCE_BENCH)
    with resources.as_file(ref) as path:
        return measurements_from_bench(
            path,
            source=(
                f"the reference figures shipped with switchboard {__version__} "
                "(2-core x86_64; `switchboard blueprint --calibrate` measures this machine)"
            ),
        )

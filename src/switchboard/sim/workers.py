"""``switchboard simulate --workers N``: one run split across N processes, one report.

One event loop holds a few thousand calls before its own lag (every ping, partial and
chunk is a callback on it) shows up as server latency. Each worker is a whole
``Simulation`` with its share of ``calls`` (the scenarios all go to the first) and its
own seed; what it measured comes back as HDR histograms, which merge exactly, and
counters, which add up. Each call still plays Retell exactly: splitting changes which
process a call lives in, never what it sends or when.

Workers are spawned, not forked: the parent may hold a running event loop (tests) or
threads, neither of which survives a fork.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import signal
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from switchboard.sim.metrics import RunMetrics
from switchboard.sim.options import SimOptions
from switchboard.sim.results import ProcessStats, RunReport

#: The seed of worker ``i`` is ``seed + i * SEED_STRIDE`` (distinct callers per worker).
SEED_STRIDE = 1_000_003


def shares(calls: int, workers: int) -> list[int]:
    """``calls`` split as evenly as possible over ``workers`` (the first get the rest)."""
    base, rest = divmod(calls, workers)
    return [base + (1 if i < rest else 0) for i in range(workers)]


def worker_options(options: SimOptions, workers: int) -> list[SimOptions]:
    """The options of each worker: its share of the callers, its own seed."""
    from switchboard.sim.runner import DEFAULT_CALLS

    calls = options.calls
    if calls is None:
        calls = 0 if options.scenario else DEFAULT_CALLS
    out = []
    for i, share in enumerate(shares(calls, workers)):
        seed = None if options.seed is None else options.seed + i * SEED_STRIDE
        out.append(
            dataclasses.replace(
                options, calls=share, seed=seed, scenario=options.scenario if i == 0 else None
            )
        )
    return out


def _work(options: SimOptions) -> dict[str, Any]:
    """In the worker: run its share, hand back what it measured (picklable)."""
    # The parent owns Ctrl-C: it reaches every process of the group, and each worker's
    # run stops gracefully on it (see ``run_simulation``); the parent only waits.
    from switchboard.sim.runner import Simulation, run_in_loop

    simulation = Simulation(options)
    started_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    report = run_in_loop(simulation)
    return {
        "started_at": started_at,
        "metrics": simulation.metrics.export(),
        "scenarios": report.scenarios,
        "client": report.client,
    }


def run_workers(options: SimOptions, workers: int) -> RunReport:
    """Run ``options`` across ``workers`` processes and merge their reports into one."""
    from switchboard.sim.runner import Simulation

    if workers < 1:
        raise ValueError("workers must be at least 1")
    parts_options = worker_options(options, workers)
    ctx = multiprocessing.get_context("spawn")
    interrupts = 0
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum: int, frame: object) -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts > 1:
            raise KeyboardInterrupt

    in_main = _in_main_thread()
    if in_main:
        signal.signal(signal.SIGINT, on_sigint)
    try:
        with ctx.Pool(workers) as pool:
            results = pool.map_async(_work, parts_options)
            while not results.ready():
                results.wait(0.2)
            parts: list[dict[str, Any]] = results.get()
    finally:
        if in_main:
            signal.signal(signal.SIGINT, previous)
    metrics = RunMetrics.merged([p["metrics"] for p in parts], options.violation_samples)
    scenarios = [s for p in parts for s in p["scenarios"]]
    client = merge_client([p["client"] for p in parts], metrics)
    simulation = Simulation(options, scenarios=[])
    report = simulation.report(min(p["started_at"] for p in parts), metrics, client)
    return _with_workers(report, scenarios, workers)


def merge_client(stats: Sequence[ProcessStats | None], metrics: RunMetrics) -> ProcessStats:
    """The simulator's CPU summed over its workers (percent of one core, so it can pass
    100), with the loop lag of all of them."""
    cpu = sum(s.cpu_seconds for s in stats if s is not None)
    percent = sum(s.cpu_percent for s in stats if s is not None)
    return ProcessStats(
        cpu_seconds=round(cpu, 3),
        cpu_percent=round(percent, 1),
        loop_lag=metrics.loop_lag.summary(),
    )


def _with_workers(report: RunReport, scenarios: list[Any], workers: int) -> RunReport:
    options = {**report.options, "workers": workers}
    return msgspec.structs.replace(report, options=options, scenarios=scenarios)


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()

"""``switchboard blueprint --calibrate``: a short bench against a local node.

The same measurement as ``make bench`` (a fresh server, the simulator in its own process,
the server's CPU read from its pid), with the OpenAI-compatible agent on the local fake
LLM, at two loads, for a few seconds each. Its JSON goes to ``results_dir`` and is read
back like any bench file.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from switchboard.blueprint.capacity import Calibration, CalibrationError, measurements_from_bench

CALIBRATION_LOADS = (40, 120)


def calibrate(
    console: Console,
    *,
    duration_s: float = 5.0,
    loads: tuple[int, ...] = CALIBRATION_LOADS,
    results_dir: Path = Path("bench/results/calibration"),
) -> Calibration:
    from switchboard.bench.cases import BenchCase, BenchSettings
    from switchboard.bench.run import run_bench

    cases = [BenchCase(name=f"calibrate-openai-{n}", agent="openai", calls=n) for n in loads]
    settings = BenchSettings(duration_s=duration_s, ramp_ms=500.0, results_dir=results_dir)
    run = run_bench(cases, settings, console)
    if run.errors:
        name, error = next(iter(run.errors.items()))
        raise CalibrationError(f"calibration case {name} could not run: {error}")
    return measurements_from_bench(results_dir / "latest.json")

"""``switchboard bench``: turns per server core and latency percentiles."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def bench(
    duration: Annotated[float, typer.Option(min=1, help="Seconds of load per case.")] = 20.0,
    turns: Annotated[
        int, typer.Option(min=1, help="Caller turns per call (a case may set its own).")
    ] = 6,
    think_ms: Annotated[float, typer.Option(min=0, help="Caller pause between turns.")] = 250.0,
    cases: Annotated[
        str | None,
        typer.Option(help="Comma-separated case names (default: all but scripted-10000)."),
    ] = None,
    results_dir: Annotated[Path, typer.Option(help="Where JSON results go.")] = Path(
        "bench/results"
    ),
    strict: Annotated[bool, typer.Option(help="Also fail when a target is missed.")] = False,
    frames: Annotated[
        bool, typer.Option(help="Only the in-process CPU cost per inbound frame kind.")
    ] = False,
) -> None:
    """Measure turns per server core and TTFB/TTC percentiles; see docs/benchmarks.md."""
    import sys

    if frames:
        from switchboard.bench.frame_costs import frame_costs, markdown_table

        typer.echo(markdown_table(frame_costs()))
        return

    from rich.console import Console

    from switchboard.bench.cases import AGENT_FILES, BenchSettings, choose_cases
    from switchboard.bench.run import run_bench
    from switchboard.config import builtin_example
    from switchboard.extras import require_cluster
    from switchboard.server.compose import check_agent_extras

    try:
        chosen = choose_cases(cases)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    for case in chosen:
        if case.profile != "single" or case.via_haproxy or case.failover:
            require_cluster(case.profile, f"switchboard bench (case {case.name})")
        check_agent_extras(builtin_example(AGENT_FILES[case.agent]))
    settings = BenchSettings(
        duration_s=duration, turns=turns, think_ms=think_ms, results_dir=results_dir
    )
    # The table is wide: give it room when the output is a file or a CI log.
    console = Console() if sys.stdout.isatty() else Console(width=150)
    run = run_bench(chosen, settings, console)
    missed = any(r.missed_targets for r in run.results)
    raise typer.Exit(0 if run.passed and not (strict and missed) else 1)

"""``switchboard chaos``: the command line of a chaos run (see docs/chaos.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def chaos(
    state: Annotated[
        Path, typer.Option("--state", help="The state file of a running switchboard cluster.")
    ],
    seed: Annotated[int, typer.Option(help="Seeds the calls and the fault schedule.")] = 1,
    calls: Annotated[int, typer.Option(min=1, help="Calls placed (in each run).")] = 20,
    turns: Annotated[int, typer.Option(min=1, help="Caller turns per call.")] = 6,
    faults: Annotated[
        str | None,
        typer.Option(
            help="Faults, kind[:param] comma-separated (default: one of each kind that applies)."
        ),
    ] = None,
    duration: Annotated[
        float, typer.Option(min=1.0, help="Seconds the chaos run lasts (calls are paced to it).")
    ] = 30.0,
    max_recovery: Annotated[
        float, typer.Option(help="A fault's time to recover above this (s) fails the run.")
    ] = 10.0,
    escalations: Annotated[
        int,
        typer.Option(
            min=0,
            help="Calls that ask for the manager twice, which the escalation service hands "
            "over (event-driven).",
        ),
    ] = 0,
    settle: Annotated[
        float,
        typer.Option(
            min=1.0, help="Seconds the event pipeline may take to catch up after the calls."
        ),
    ] = 180.0,
    json_out: Annotated[Path | None, typer.Option(help="Write the JSON report here.")] = None,
    report: Annotated[Path | None, typer.Option(help="Write the HTML report here.")] = None,
) -> None:
    """Run seeded faults against a running switchboard cluster while simulated calls
    play, and judge the calls against a fault-free control run. Exit 0: pass, 1: fail,
    2: bad input."""
    from rich.console import Console

    from switchboard.chaos.report import print_summary, write_html, write_json
    from switchboard.chaos.run import ChaosInputError, ChaosOptions, run_chaos

    def say(line: str) -> None:
        typer.echo(f"chaos: {line}", err=True)

    try:
        options = ChaosOptions(
            state_file=state,
            seed=seed,
            calls=calls,
            turns=turns,
            faults=faults,
            duration_s=duration,
            max_recovery_s=max_recovery,
            escalations=escalations,
            settle_s=settle,
        )
        result = run_chaos(options, say)
    except ChaosInputError as exc:
        typer.echo(f"chaos: {exc}", err=True)
        raise typer.Exit(2) from None
    if json_out is not None:
        write_json(result, json_out)
    if report is not None:
        write_html(result, report)
    print_summary(result, Console())
    for started in result.processes_started:
        say(f"restarted {started.name} is pid {started.pid} (not a child of the cluster process)")
    raise typer.Exit(0 if result.findings.passed else 1)

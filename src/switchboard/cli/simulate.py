"""``switchboard simulate``: Retell's side of many calls against a server."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def simulate(
    url: Annotated[
        str,
        typer.Option(help="Server base URL, e.g. ws://HOST:PORT/llm-websocket (call id appended)."),
    ],
    calls: Annotated[
        int | None,
        typer.Option(min=0, help="Random callers (default 10, or none with --scenario)."),
    ] = None,
    turns: Annotated[int, typer.Option(min=0, help="Caller turns per random call.")] = 5,
    think_ms: Annotated[
        float, typer.Option(min=0, help="Caller pause before each turn (±50%).")
    ] = 250.0,
    word_ms: Annotated[
        float, typer.Option(min=0, help="Pause between the caller's partials.")
    ] = 0.0,
    ramp_ms: Annotated[float, typer.Option(min=0, help="Spread call starts over this time.")] = 0.0,
    barge_in_rate: Annotated[
        float, typer.Option(min=0, max=1, help="Share of turns where the caller keeps talking.")
    ] = 0.0,
    reminder_rate: Annotated[
        float, typer.Option(min=0, max=1, help="Share of turns preceded by caller silence.")
    ] = 0.0,
    scenario: Annotated[
        Path | None, typer.Option(help="Scenario file or directory (each played once).")
    ] = None,
    duration: Annotated[
        float | None, typer.Option(min=0, help="Seconds to keep --calls calls going.")
    ] = None,
    profile: Annotated[
        str | None, typer.Option(help="Budget of a profile: single, distributed, event-driven.")
    ] = None,
    budget_ms: Annotated[
        float | None, typer.Option(min=0, help="TTFB p99 budget (overrides --profile).")
    ] = None,
    stale_grace_ms: Annotated[
        float, typer.Option(min=0, help="Frames for a superseded id this late are in flight.")
    ] = 25.0,
    turn_timeout: Annotated[
        float, typer.Option(min=0, help="Seconds to wait for content_complete.")
    ] = 10.0,
    begin_timeout: Annotated[
        float, typer.Option(min=0, help="Seconds to wait for the begin message.")
    ] = 10.0,
    open_timeout: Annotated[float, typer.Option(min=0, help="WebSocket open timeout (s).")] = 7.0,
    seed: Annotated[int | None, typer.Option(help="Seed for the callers' choices.")] = None,
    label: Annotated[str, typer.Option(help="Name of the run in reports.")] = "",
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Write the report as JSON.")
    ] = None,
    report: Annotated[Path | None, typer.Option(help="Write the HTML report.")] = None,
    quiet: Annotated[bool, typer.Option(help="No live display and no summary.")] = False,
    workers: Annotated[
        int, typer.Option(min=1, help="Processes to split the calls across (one report).")
    ] = 1,
) -> None:
    """Play Retell's side of many calls against a server; exit 1 unless the run passes."""
    from rich.console import Console

    from switchboard.sim.judged_run import run_judged
    from switchboard.sim.options import SimOptions
    from switchboard.sim.reachability import unreachable
    from switchboard.sim.report import print_summary, write_html, write_json
    from switchboard.sim.scenario import ScenarioError, load_scenarios

    console = Console()
    try:
        options = SimOptions(
            url=url,
            calls=calls,
            turns=turns,
            think_ms=think_ms,
            word_ms=word_ms,
            ramp_ms=ramp_ms,
            barge_in_rate=barge_in_rate,
            reminder_rate=reminder_rate,
            scenario=scenario,
            duration_s=duration,
            profile=profile,
            budget_ms=budget_ms,
            stale_grace_ms=stale_grace_ms,
            turn_timeout_s=turn_timeout,
            begin_timeout_s=begin_timeout,
            open_timeout_s=open_timeout,
            seed=seed,
            label=label,
        )
        if scenario is not None:
            load_scenarios(scenario)  # a bad file is bad input, whatever the URL
        problem = unreachable(url, open_timeout)
        if problem is not None:
            typer.echo(f"simulate: cannot reach {url}: {problem}", err=True)
            raise typer.Exit(2)
        live = console.is_terminal and not quiet
        result = run_judged(options, workers, console if live else None)
    except (ValueError, ScenarioError) as exc:
        typer.echo(f"simulate: {exc}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        typer.echo("simulate: aborted", err=True)
        raise typer.Exit(130) from None
    if json_path is not None:
        write_json(result, json_path)
    if report is not None:
        write_html(result, report)
    if not quiet:
        print_summary(result, console)
    raise typer.Exit(0 if result.passed else 1)

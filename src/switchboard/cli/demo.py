"""``switchboard demo``: start a profile, play it, judge it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from switchboard.demo import demo_report_path

__all__ = ["demo", "demo_report_path"]


def demo(
    calls: Annotated[
        int | None, typer.Option(min=1, help="Concurrent random calls (20; failover: 30).")
    ] = None,
    turns: Annotated[
        int | None, typer.Option(min=1, help="Caller turns per random call (4; failover: 12).")
    ] = None,
    profile: Annotated[
        str,
        typer.Option(
            help="single: one server; distributed: 3 nodes, HAProxy, kill -9 of one; "
            "event-driven: the bus, archive, analytics and escalation services too."
        ),
    ] = "single",
    html: Annotated[
        Path | None,
        typer.Option(help="HTML report to write (default: reports/demo-PROFILE.html)."),
    ] = None,
) -> None:
    """Start a server, play the receptionist scenarios and random calls, judge the run."""
    from rich.console import Console

    from switchboard.cluster.processes import ChildError
    from switchboard.config import BUDGET_MS
    from switchboard.demo.run import demo_options, run_demo

    if profile not in BUDGET_MS:
        raise typer.BadParameter(f"profile must be one of {', '.join(BUDGET_MS)}, got {profile!r}")
    options = demo_options(profile, calls=calls, turns=turns, html=html)
    try:
        report = run_demo(options, Console())
    except ChildError as exc:
        typer.echo(f"demo could not run: {exc}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(0 if report.passed else 1)

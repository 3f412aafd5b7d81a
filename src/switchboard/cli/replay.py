"""The ``switchboard replay`` verb: options in, ``command.run_replay`` does the rest."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from switchboard.replay.compare import DEFAULT_SIMILARITY


def replay(
    source: Annotated[
        str,
        typer.Argument(
            help="Retell call objects (JSON: an array or one call), a SQLite archive or a "
            "postgresql:// URL."
        ),
    ],
    url: Annotated[
        str | None,
        typer.Option("--url", help="Replay against this deployment (its call socket's base URL)."),
    ] = None,
    agent_file: Annotated[
        Path | None,
        typer.Option("--agent-file", help="Replay against this agent file, served in-process."),
    ] = None,
    speed: Annotated[
        float, typer.Option("--speed", help="Play the recorded gaps this many times faster.")
    ] = 1.0,
    concurrency: Annotated[
        int, typer.Option("--concurrency", help="Calls in flight at once.")
    ] = 10,
    json_out: Annotated[
        Path | None, typer.Option("--json-out", help="Write the JSON summary here.")
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write the HTML report here.")
    ] = None,
    junit: Annotated[Path | None, typer.Option("--junit", help="Write JUnit XML here.")] = None,
    similarity: Annotated[
        float,
        typer.Option(
            "--similarity",
            help="Cosine (MiniLM) at which a reworded reply still counts as the same; "
            "1 compares exact text only.",
        ),
    ] = DEFAULT_SIMILARITY,
    profile: Annotated[
        str, typer.Option("--profile", help="Whose TTFB budget replies are held against.")
    ] = "single",
) -> None:
    """Replay recorded calls against an agent and compare what it says and does.

    Exit 0: nothing differs; 1: something does; 2: bad input.
    """
    from switchboard.log import configure
    from switchboard.replay.command import ReplayInputError, ReplayRequest, run_replay

    if agent_file is not None:
        configure("error")  # the in-process server's start-up notes are not the replay's

    request = ReplayRequest(
        source=source,
        url=url,
        agent_file=agent_file,
        speed=speed,
        concurrency=concurrency,
        json_out=json_out,
        report=report,
        junit=junit,
        similarity=similarity,
        profile=profile,
    )
    try:
        code, _ = run_replay(request, typer.echo)
    except ReplayInputError as err:
        typer.echo(f"replay: {err}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(code)

"""The ``switchboard`` application: every verb's module registered on one Typer app.

Each subcommand is a thin shell: it parses options and calls into the package that owns
the work. The order of registration is the order of ``switchboard --help``.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from switchboard.cli.cache import cache_app

app = typer.Typer(
    name="switchboard",
    help="A backend for Retell AI custom-LLM voice agents.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    add_completion=False,
)
app.add_typer(cache_app)


def _version(value: bool) -> None:
    if value:
        from switchboard import __version__

        typer.echo(f"switchboard {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """A backend for Retell AI custom-LLM voice agents."""


def _add_subcommands() -> None:
    from switchboard.cli.bench import bench
    from switchboard.cli.blueprint import blueprint, validate
    from switchboard.cli.calls import calls_app
    from switchboard.cli.chaos import chaos
    from switchboard.cli.cluster import cluster
    from switchboard.cli.demo import demo
    from switchboard.cli.replay import replay
    from switchboard.cli.serve import serve
    from switchboard.cli.service import archive_app, service_app
    from switchboard.cli.simulate import simulate

    for verb in (serve, cluster, demo, bench, simulate):
        app.command()(verb)

    app.add_typer(calls_app)
    app.add_typer(service_app, name="service")
    app.add_typer(archive_app, name="archive")
    app.command()(blueprint)
    app.command()(validate)
    app.command()(chaos)
    app.command()(replay)


_add_subcommands()


#: Help laid out for a file or a pipe (CI logs, ``| less``): wider than Rich's 80-column
#: fallback, so descriptions and option help are not wrapped mid-sentence.
HELP_COLUMNS = "120"


def main() -> None:
    if not sys.stdout.isatty():
        os.environ.setdefault("COLUMNS", HELP_COLUMNS)
    app()

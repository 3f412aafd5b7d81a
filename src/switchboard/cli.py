"""The ``switchboard`` command.

Each subcommand is a thin shell: it parses options and calls into the package.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="switchboard",
    help="A backend for Retell AI custom-LLM voice agents.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind.")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port.")] = None,
    agent_file: Annotated[
        Path | None, typer.Option("--agent-file", help="Agent file (YAML or TOML).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="Settings file (TOML).")
    ] = None,
) -> None:
    """Run the server: Retell connects to ws://HOST:PORT/llm-websocket/{call_id}."""
    from switchboard.server.run import run_server

    run_server(config_file=config, host=host, port=port, agent_file=agent_file)


def main() -> None:
    app()

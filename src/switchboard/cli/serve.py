"""``switchboard serve``: run one node."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def serve(
    host: Annotated[
        str | None, typer.Option(help="Interface to bind (default: 127.0.0.1).")
    ] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default: 8080).")] = None,
    agent_file: Annotated[
        Path | None,
        typer.Option("--agent-file", help="Agent file, YAML or TOML (default: the receptionist)."),
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", help="Settings file (TOML).")] = None,
    profile: Annotated[
        str | None,
        typer.Option(help="single, distributed or event-driven (default: single)."),
    ] = None,
    redis_url: Annotated[
        str | None,
        typer.Option(help="Shared call state, e.g. redis://HOST:6379/0 (distributed profiles)."),
    ] = None,
    node_id: Annotated[
        str | None, typer.Option(help="This node's name in the directory (default: host-pid).")
    ] = None,
    bus: Annotated[
        str | None,
        typer.Option("--bus", help="Event bus: kafka://H:P or redis://H:P/DB (event-driven)."),
    ] = None,
) -> None:
    """Run the server: Retell connects to ws://HOST:PORT/llm-websocket/{call_id}.

    Every setting can also come from --config or a SWITCHBOARD_* variable; flags win.
    """
    from switchboard.server.run import StartupError, run_server

    try:
        run_server(
            config_file=config,
            host=host,
            port=port,
            agent_file=agent_file,
            profile=profile,
            redis_url=redis_url,
            node_id=node_id,
            bus_url=bus,
        )
    except StartupError as exc:
        typer.echo(f"serve: {exc}", err=True)
        raise typer.Exit(2) from None

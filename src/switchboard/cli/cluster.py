"""``switchboard cluster``: a whole profile from real processes, in the foreground."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def cluster(
    nodes: Annotated[int, typer.Option(min=1, help="switchboard serve processes.")] = 3,
    port: Annotated[int, typer.Option(help="HAProxy's port: the one Retell connects to.")] = 8080,
    profile: Annotated[
        str, typer.Option(help="The nodes' profile: single, distributed or event-driven.")
    ] = "distributed",
    agent_file: Annotated[
        Path | None, typer.Option("--agent-file", help="Agent file (YAML or TOML).")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="Settings file (TOML) for every node.")
    ] = None,
    redis_url: Annotated[
        str | None, typer.Option(help="Use this Redis instead of starting valkey-server.")
    ] = None,
    state_file: Annotated[
        Path | None, typer.Option(help="Write URLs and every pid here as JSON.")
    ] = None,
    log_dir: Annotated[
        Path | None, typer.Option(help="Where logs and haproxy.cfg go (default: a temp dir).")
    ] = None,
    host: Annotated[str, typer.Option(help="Interface HAProxy binds.")] = "127.0.0.1",
    bus: Annotated[
        str, typer.Option(help="event-driven: kafka (a tansu broker) or redis (Streams).")
    ] = "kafka",
    escalation_rules: Annotated[
        Path | None, typer.Option(help="event-driven: escalation rules (default: the example).")
    ] = None,
    dashboard_port: Annotated[
        int | None, typer.Option(help="event-driven: the analytics dashboard's port.")
    ] = None,
) -> None:
    """Run valkey-server, N nodes and HAProxy in the foreground; SIGTERM drains and stops.
    With --profile event-driven also the bus and the archive, analytics and escalation
    services."""
    from typing import cast

    from switchboard.cluster.processes import ChildError
    from switchboard.cluster.run import ClusterOptions, run_cluster
    from switchboard.cluster.services import BUS_KINDS
    from switchboard.config import BUDGET_MS, Profile

    if profile not in BUDGET_MS:
        raise typer.BadParameter(f"profile must be one of {', '.join(BUDGET_MS)}, got {profile!r}")
    if bus not in BUS_KINDS:
        raise typer.BadParameter(f"bus must be one of {', '.join(BUS_KINDS)}, got {bus!r}")
    options = ClusterOptions(
        nodes=nodes,
        port=port,
        profile=cast(Profile, profile),
        agent_file=agent_file,
        config=config,
        redis_url=redis_url,
        state_file=state_file,
        log_dir=log_dir,
        bind_host=host,
        bus=bus,
        escalation_rules=escalation_rules,
        dashboard_port=dashboard_port,
    )

    def say(line: str) -> None:
        typer.echo(f"cluster: {line}", err=True)

    try:
        code = run_cluster(options, say, lambda url: typer.echo(url))
    except (ChildError, OSError, ValueError, RuntimeError) as exc:
        typer.echo(f"cluster could not run: {exc}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    raise typer.Exit(code)

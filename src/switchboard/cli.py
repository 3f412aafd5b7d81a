"""The ``switchboard`` command.

Each subcommand is a thin shell: it parses options and calls into the package.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from switchboard.cache.commands import cache_app

app = typer.Typer(
    name="switchboard",
    help="A backend for Retell AI custom-LLM voice agents.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    add_completion=False,
)
app.add_typer(cache_app)


@app.command()
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


@app.command()
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

    from switchboard.cluster.run import ClusterOptions, run_cluster
    from switchboard.cluster.services import BUS_KINDS
    from switchboard.config import BUDGET_MS, Profile
    from switchboard.sim.processes import ChildError

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


def demo_report_path(profile: str) -> Path:
    """Each profile's demo keeps its own report, so running all three leaves all three."""
    return Path("reports") / f"demo-{profile}.html"


@app.command()
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

    from switchboard.config import BUDGET_MS
    from switchboard.sim.demo import FAILOVER_CALLS, FAILOVER_TURNS, DemoOptions, run_demo
    from switchboard.sim.processes import ChildError

    if profile not in BUDGET_MS:
        raise typer.BadParameter(f"profile must be one of {', '.join(BUDGET_MS)}, got {profile!r}")
    single = profile == "single"
    html = html or demo_report_path(profile)
    options = DemoOptions(
        calls=calls or (20 if single else FAILOVER_CALLS),
        turns=turns or (4 if single else FAILOVER_TURNS),
        profile=profile,
        html_path=html,
        json_path=html.with_suffix(".json"),
    )
    try:
        report = run_demo(options, Console())
    except ChildError as exc:
        typer.echo(f"demo could not run: {exc}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(0 if report.passed else 1)


@app.command()
def bench(
    duration: Annotated[float, typer.Option(min=1, help="Seconds of load per case.")] = 20.0,
    turns: Annotated[int, typer.Option(min=1, help="Caller turns per call.")] = 6,
    think_ms: Annotated[float, typer.Option(min=0, help="Caller pause between turns.")] = 250.0,
    cases: Annotated[
        str | None, typer.Option(help="Comma-separated case names (default: all).")
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
        from switchboard.sim.frame_costs import frame_costs, markdown_table

        typer.echo(markdown_table(frame_costs()))
        return

    from rich.console import Console

    from switchboard.sim.bench import DEFAULT_CASES, BenchSettings, run_bench

    chosen = list(DEFAULT_CASES)
    if cases:
        wanted = {c.strip() for c in cases.split(",") if c.strip()}
        unknown = wanted - {c.name for c in DEFAULT_CASES}
        if unknown:
            known = ", ".join(c.name for c in DEFAULT_CASES)
            raise typer.BadParameter(
                f"unknown case(s) {', '.join(sorted(unknown))}; known: {known}"
            )
        chosen = [c for c in DEFAULT_CASES if c.name in wanted]
    settings = BenchSettings(
        duration_s=duration, turns=turns, think_ms=think_ms, results_dir=results_dir
    )
    # The table is wide: give it room when the output is a file or a CI log.
    console = Console() if sys.stdout.isatty() else Console(width=150)
    run = run_bench(chosen, settings, console)
    missed = any(r.missed_targets for r in run.results)
    raise typer.Exit(0 if run.passed and not (strict and missed) else 1)


@app.command()
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
    import msgspec
    from rich.console import Console

    from switchboard.sim.options import SimOptions
    from switchboard.sim.reachability import unreachable
    from switchboard.sim.report import print_summary, write_html, write_json
    from switchboard.sim.runner import run_simulation
    from switchboard.sim.scenario import ScenarioError, load_scenarios
    from switchboard.sim.server_metrics import (
        cache_counters,
        metrics_url,
        segment_buckets,
        turn_breakdown,
    )
    from switchboard.sim.verdict import judge

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
        before = segment_buckets(metrics_url(url))
        if workers > 1:
            from switchboard.sim.workers import run_workers

            result = judge(run_workers(options, workers))
        else:
            result = judge(run_simulation(options, console if live else None))
        timings = turn_breakdown(before, segment_buckets(metrics_url(url)))
        result = msgspec.structs.replace(
            result, cache=cache_counters(metrics_url(url)), server_timings=timings
        )
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
    from switchboard.blueprint.cli import blueprint, validate
    from switchboard.chaos.cli import chaos
    from switchboard.control.cli import calls_app
    from switchboard.replay.cli import archive_export, replay
    from switchboard.services.cli import archive_app, service_app

    app.add_typer(calls_app)
    app.add_typer(service_app, name="service")
    archive_app.command("export")(archive_export)  # replay's input, read from the archive
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

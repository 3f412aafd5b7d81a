"""``switchboard blueprint``: decide, explain, and write the deployment files."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from switchboard.blueprint.matrix import Decision
from switchboard.blueprint.model import IMAGE


def blueprint(
    calls: Annotated[int | None, typer.Option(help="Target concurrent calls.")] = None,
    budget_ms: Annotated[
        float | None, typer.Option(help="TTFB p99 budget (request -> first chunk), ms.")
    ] = None,
    analytics: Annotated[bool, typer.Option(help="Run the analytics service.")] = False,
    escalation: Annotated[bool, typer.Option(help="Run the escalation service.")] = False,
    llm_ttft_ms: Annotated[
        float | None, typer.Option(help="Your LLM's time to first token (p99), ms.")
    ] = None,
    nodes: Annotated[int | None, typer.Option(help="Nodes you want (default: decided).")] = None,
    profile: Annotated[
        str | None, typer.Option(help="Profile you want (default: decided).")
    ] = None,
    longest_call_s: Annotated[int, typer.Option(help="Longest call to carry, seconds.")] = 3600,
    turn_interval_s: Annotated[
        float, typer.Option(help="Seconds between two turns of a live call.")
    ] = 5.0,
    max_calls_per_node: Annotated[
        int, typer.Option(help="Blast-radius cap: calls one node may hold.")
    ] = 200,
    bus: Annotated[str, typer.Option(help="Event bus: kafka or redis-streams.")] = "kafka",
    image: Annotated[str, typer.Option(help="Container image of switchboard.")] = IMAGE,
    namespace: Annotated[str, typer.Option(help="Kubernetes namespace.")] = "switchboard",
    bench_file: Annotated[
        Path | None, typer.Option("--bench", help="Bench JSON to calibrate from.")
    ] = None,
    calibrate: Annotated[
        bool, typer.Option(help="Measure a local node now instead of reading bench results.")
    ] = False,
    out: Annotated[Path | None, typer.Option(help="Write the files to this directory.")] = None,
    force: Annotated[bool, typer.Option(help="Replace an existing --out directory.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the decision as JSON.")] = False,
) -> None:
    """Pick a profile with the decision matrix, size it from measured capacity, write the files."""
    from rich.console import Console

    from switchboard.blueprint.capacity import (
        CalibrationError,
        default_calibration,
        measurements_from_bench,
        node_capacity,
    )
    from switchboard.blueprint.files import render_all
    from switchboard.blueprint.matrix import InputError, Inputs, decide
    from switchboard.blueprint.model import build_deployment
    from switchboard.blueprint.writer import OutputError, preflight, write_blueprint

    err = Console(stderr=True)

    def fail(message: str) -> typer.Exit:
        typer.echo(f"blueprint: {message}", err=True)
        return typer.Exit(2)

    try:
        if calls is None or budget_ms is None:
            raise InputError("--calls and --budget-ms are required")
        inputs = Inputs(
            calls=calls,
            budget_ms=budget_ms,
            analytics=analytics,
            escalation=escalation,
            llm_ttft_ms=llm_ttft_ms,
            nodes=nodes,
            profile=profile,
        )
        if out is not None:
            preflight(out, force)
        if calibrate:
            from switchboard.blueprint.calibrate import calibrate as run_calibration

            calibration = run_calibration(err)
        elif bench_file is not None:
            calibration = measurements_from_bench(bench_file)
        else:
            calibration = default_calibration()
        capacity = node_capacity(
            calibration,
            budget_ms=inputs.budget_ms,
            llm_ttft_ms=llm_ttft_ms or 0.0,
            agent="openai",
            turn_interval_s=turn_interval_s,
            max_calls_per_node=max_calls_per_node,
        )
        decision = decide(inputs, capacity)
        deployment = build_deployment(
            decision, namespace=namespace, image=image, longest_call_s=longest_call_s, bus=bus
        )
        written: list[Path] = []
        if out is not None:
            files = render_all(decision, deployment, calibration.source)
            written = write_blueprint(files, out, force=force)
    except (InputError, CalibrationError, OutputError) as exc:
        raise fail(str(exc)) from None
    except ValueError as exc:
        raise fail(str(exc)) from None
    if as_json:
        sys.stdout.write(json.dumps(decision_json(decision, written), indent=2) + "\n")
    else:
        print_decision(decision, written, calibration.source)


def decision_json(decision: Decision, written: list[Path]) -> dict[str, Any]:
    c = decision.capacity
    return {
        "profile": decision.profile,
        "nodes": decision.nodes,
        "budget_ms": decision.budget_ms,
        "state": decision.state,
        "scaling": decision.scaling,
        "cache": decision.cache,
        "reasons": [f"{f.name}: {f.why} -> {f.profile}" for f in decision.factors],
        "factors": [
            {
                "name": f.name,
                "value": f.value,
                "row": f.row,
                "profile": f.profile,
                "why": f.why,
                "change": f.change,
            }
            for f in decision.factors
        ],
        "warnings": list(decision.warnings),
        "capacity": {
            "calls_per_node": c.calls_per_node,
            "measured_calls": c.measured_calls,
            "rate_turns_per_s": c.rate_turns_per_s,
            "turn_interval_s": c.turn_interval_s,
            "max_calls_per_node": c.max_calls_per_node,
            "basis": None if c.basis is None else c.basis.name,
        },
        "files": [str(p) for p in written],
    }


def print_decision(decision: Decision, written: list[Path], source: str) -> None:
    """Factor by factor, one paragraph each, readable in any terminal width and in CI logs."""
    c = decision.capacity
    lines = [
        f"profile: {decision.profile}, {decision.nodes} node(s) of at most {c.calls_per_node} "
        f"calls; state in {decision.state}; {decision.scaling} scaling; "
        f"{decision.budget_ms:g} ms budget" + ("; response cache on" if decision.cache else ""),
        "",
    ]
    for f in decision.factors:
        mark = "  <- decides" if f.profile == decision.profile else ""
        lines += [
            f"{f.name}: {f.value} -> row {f.row} -> {f.profile}{mark}",
            f"    why: {f.why}",
            f"    what would change it: {f.change}",
        ]
    lines += [
        "",
        f"capacity ({source}): {c.rate_turns_per_s:g} turns/s per node x a turn every "
        f"{c.turn_interval_s:g} s = {c.measured_calls} calls, capped at "
        f"{c.max_calls_per_node}: {c.calls_per_node} calls per node",
    ]
    lines += [f"warning: {w}" for w in decision.warnings]
    if written:
        lines.append(f"wrote {len(written)} files under {_common_root(written)}")
    typer.echo("\n".join(lines))


def _common_root(paths: list[Path]) -> Path:
    import os

    return Path(os.path.commonpath([str(p) for p in paths]))


def validate(
    profile: Annotated[str, typer.Option(help="The profile to hold it to.")],
    url: Annotated[
        str | None, typer.Option(help="Deployment URL, ws(s)://HOST/llm-websocket.")
    ] = None,
    cluster: Annotated[
        Path | None, typer.Option(help="State file of a `switchboard cluster` (kills nodes).")
    ] = None,
    calls: Annotated[int, typer.Option(help="Target concurrent calls.")] = 10,
    budget_ms: Annotated[
        float | None, typer.Option(help="TTFB p99 budget (default: the profile's).")
    ] = None,
    capacity: Annotated[
        int | None, typer.Option(help="Calls the deployment admits (default: from /readyz).")
    ] = None,
    duration: Annotated[float, typer.Option(help="Seconds of load per check.")] = 10.0,
    require_cache: Annotated[
        bool, typer.Option(help="FAIL the slow-LLM check when the cache is off.")
    ] = False,
    escalation_line: Annotated[
        str | None,
        typer.Option(help="Caller line the escalation check asks (default: from its rules)."),
    ] = None,
    report: Annotated[Path, typer.Option(help="HTML report (JSON beside it).")] = Path(
        "reports/validation.html"
    ),
) -> None:
    """Validate a running deployment against its profile; exit 1 on any FAIL."""
    from switchboard.validate.report import write_report
    from switchboard.validate.run import ValidateOptions, run_validation
    from switchboard.validate.target import TargetError, cluster_target, url_target

    try:
        if (url is None) == (cluster is None):
            raise TargetError("give exactly one of --url and --cluster")
        options = ValidateOptions(
            profile=profile,
            calls=calls,
            budget_ms=budget_ms,
            capacity=capacity,
            duration_s=duration,
            require_cache=require_cache,
            escalation_line=escalation_line,
        )
        if url is not None:
            target = url_target(url)
        else:
            assert cluster is not None
            target = cluster_target(cluster)
    except ValueError as exc:
        typer.echo(f"validate: {exc}", err=True)
        raise typer.Exit(2) from None
    from switchboard.log import configure

    configure("warning")  # the simulator's per-attempt lines would drown the results
    result = run_validation(target, options)
    json_path = write_report(result, report)
    for check in result.checks:
        figures = ", ".join(f"{k} {v}" for k, v in check.figures.items())
        typer.echo(f"{'PASS' if check.passed else 'FAIL'}  {check.name}: {figures}")
        if check.detail:
            typer.echo(f"      {check.detail}")
    for name, why in result.not_run.items():
        typer.echo(f"----  {name}: not run ({why})")
    typer.echo(f"{'PASS' if result.passed else 'FAIL'}: report {report} and {json_path}")
    raise typer.Exit(0 if result.passed else 1)

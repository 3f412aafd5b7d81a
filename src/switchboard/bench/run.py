"""``switchboard bench``: how much turn throughput one server core buys, and at what latency.

Each case starts a fresh server pinned to core 0 and runs the simulator on core 1 (when
there are two cores and ``taskset``), both as separate processes, so the server's CPU
can be read from its own pid: ``turns_per_core_s`` = turns / server CPU seconds over the
simulator run. That is a cost per turn, so it holds however hard the simulator pushes;
latency percentiles, on the other hand, are only as good as the simulator is idle, which
is why its CPU and loop lag are reported and flagged by the verdict.

The distributed rows add real parts: a private valkey-server (one per bench run, each
case in its own key namespace) for ``profile = "distributed"``, HAProxy in front of the
node for ``via_haproxy`` (pinned beside the server), and for ``failover`` a whole
``switchboard cluster`` (three nodes, HAProxy, Redis) of which the busiest node is
``kill -9``ed mid-run. Their targets are relative to another case of the same run where
the issue says so (turns per core against the single profile, TTFB p99 against the node
without the load balancer), so a slower machine does not make them meaningless.

Results go to ``bench/results/`` as one JSON per run (timestamped) plus ``latest.json``.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import msgspec
from rich.console import Console
from rich.text import Text

from switchboard.bench.cases import AGENT_FILES, BenchCase, BenchSettings
from switchboard.bench.judge import cache_targets_missed, missed_targets
from switchboard.bench.profiles import archive_service, event_latency
from switchboard.bench.results import BenchCaseResult, BenchRun, write_run
from switchboard.bench.table import bench_notes, bench_table
from switchboard.cluster.failover import kill_busiest_mid_run, summarize
from switchboard.cluster.haproxy import HAProxyError, LoadBalancer, Server, start_haproxy
from switchboard.cluster.launch import start_cluster_child, stop_cluster_child
from switchboard.cluster.processes import (
    Child,
    ChildError,
    free_port,
    run_simulator,
    simulator_result,
    start_fake_llm,
    start_server,
    start_simulator,
)
from switchboard.cluster.valkey import redis_url, start_valkey
from switchboard.config import builtin_example
from switchboard.sim.resources import ResourceSampler
from switchboard.sim.results import FailoverSummary, ProcessStats, RunReport
from switchboard.sim.server_metrics import cache_counters, loop_health
from switchboard.sim.verdict import judge

SERVER_CPU = 0
SIMULATOR_CPU = 1


def run_bench(
    cases: Sequence[BenchCase],
    settings: BenchSettings,
    console: Console,
    log_dir: Path | None = None,
) -> BenchRun:
    """Run every case in turn, print the table, write the JSON files, return the run."""
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="switchboard-bench-"))
    cores = os.cpu_count() or 1
    pinned = shutil.which("taskset") is not None and cores >= 2
    run = BenchRun(
        started_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        host={
            "cpu_count": cores,
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "pinned": pinned,
        },
        settings={
            "duration_s": settings.duration_s,
            "turns": settings.turns,
            "think_ms": settings.think_ms,
            "ramp_ms": settings.ramp_ms,
            "seed": settings.seed,
        },
    )
    server_cpu = SERVER_CPU if pinned else None
    sim_cpu = SIMULATOR_CPU if pinned else None
    fake_llms: dict[float, Child] = {}  # by time to first token
    valkey: Child | None = None
    try:
        for case in cases:
            console.print(f"[dim]bench[/] {case.name}: {case.calls} calls ...")
            try:
                if case.agent == "openai" and case.ttft_ms not in fake_llms:
                    fake_llms[case.ttft_ms] = start_fake_llm(
                        port=free_port(), log_dir=log_dir, cpu=sim_cpu, ttft_ms=case.ttft_ms
                    )
                if (case.profile != "single" or case.cache == "redis") and valkey is None:
                    # Left unpinned: pinned to the simulator's core, each save's wake-up
                    # crosses cores, and a round trip cost the node 63 us of CPU against
                    # 34 us unpinned (docs/scale.md, "The round trip's floor").
                    valkey = start_valkey(log_dir=log_dir)
                fake_llm = fake_llms.get(case.ttft_ms)
                parts = _Parts(
                    log_dir=log_dir,
                    server_cpu=server_cpu,
                    sim_cpu=sim_cpu,
                    llm_port=fake_llm.port if fake_llm is not None else None,
                    redis_url=redis_url(valkey) if valkey is not None else None,
                )
                run_one = _run_failover_case if case.failover else _run_case
                if case.chaos:
                    run_one = _run_chaos_case
                run.results.append(run_one(case, settings, parts))
            except (ChildError, HAProxyError, OSError, ValueError) as exc:
                run.errors[case.name] = str(exc)
                console.print(Text(f"{case.name} could not run: {exc}", style="red"))
    finally:
        for child in fake_llms.values():
            child.stop()
        if valkey is not None:
            valkey.stop()
    reports = {r.case.name: r.report for r in run.results}
    for result in run.results:
        result.missed_targets = missed_targets(result.case, result.report, reports)
        result.missed_targets += cache_targets_missed(result.case, result.cache)
    console.print(bench_table(run))
    for note in bench_notes(run):
        console.print(note)
    stamp = run.started_at.replace("-", "").replace(":", "")
    for name in (f"bench-{stamp}.json", "latest.json"):
        write_run(run, settings.results_dir / name)
    console.print(f"results: {settings.results_dir / 'latest.json'} (logs in {log_dir})")
    return run


class _Parts(msgspec.Struct, frozen=True, kw_only=True):
    """What the cases of one run share: where logs go, the cores, the fake LLM and Redis."""

    log_dir: Path
    server_cpu: int | None
    sim_cpu: int | None
    llm_port: int | None
    redis_url: str | None


def _server_env(case: BenchCase, parts: _Parts) -> dict[str, str]:
    if case.agent not in AGENT_FILES:
        raise ValueError(f"unknown agent {case.agent!r}; expected one of {', '.join(AGENT_FILES)}")
    env = {
        "SWITCHBOARD_MAX_CALLS": str(case.calls * 2 + 10),
        "SWITCHBOARD_LOG_LEVEL": "warning",
        "SWITCHBOARD_DRAIN_TIMEOUT_S": "2",
        "SWITCHBOARD_PROFILE": case.profile,
    }
    if case.profile != "single":
        if parts.redis_url is None:
            raise ValueError(f"{case.name}: profile {case.profile} needs Redis")
        env["SWITCHBOARD_REDIS_URL"] = parts.redis_url
        env["SWITCHBOARD_REDIS_NAMESPACE"] = f"bench:{case.name}:{os.getpid()}:"
    if case.profile == "event-driven":
        env["SWITCHBOARD_BUS_URL"] = env["SWITCHBOARD_REDIS_URL"]
        env["SWITCHBOARD_NODE_ID"] = f"bench-{case.name}"
        env["SWITCHBOARD_OUTBOX_DIR"] = str(parts.log_dir / case.name / "outbox")
    if case.agent == "openai":
        env["OPENAI_BASE_URL"] = f"http://127.0.0.1:{parts.llm_port}/v1"
        env["OPENAI_API_KEY"] = "bench"
    # Off unless the case asks: the other cases stay comparable with the reference figures.
    env["SWITCHBOARD_CACHE"] = case.cache
    if case.cache == "redis" and case.profile == "single":
        if parts.redis_url is None:
            raise ValueError(f"{case.name}: a Redis cache needs Redis")
        env["SWITCHBOARD_REDIS_URL"] = parts.redis_url
        env["SWITCHBOARD_REDIS_NAMESPACE"] = f"bench:{case.name}:{os.getpid()}:"
    return env


def _run_case(case: BenchCase, settings: BenchSettings, parts: _Parts) -> BenchCaseResult:
    log_dir = parts.log_dir
    port = free_port()
    env = _server_env(case, parts)
    agent_file = builtin_example(AGENT_FILES[case.agent])
    if case.profile == "event-driven" and not case.archive_live:
        result = _run_node(case, settings, parts, port, env, agent_file)
        with archive_service(env, log_dir, case.name, parts.sim_cpu) as archive_db:
            assert archive_db is not None
            archived = event_latency(archive_db, result.report.turns)
        result.event_latency_ms = {"archived": archived.get("archived", 0.0)}
        return result
    with archive_service(env, log_dir, case.name, parts.sim_cpu) as archive_db:
        result = _run_node(case, settings, parts, port, env, agent_file)
        if archive_db is not None:
            result.event_latency_ms = event_latency(archive_db, result.report.turns)
    return result


def _run_node(
    case: BenchCase,
    settings: BenchSettings,
    parts: _Parts,
    port: int,
    env: dict[str, str],
    agent_file: Path,
) -> BenchCaseResult:
    log_dir = parts.log_dir
    server = start_server(
        port=port, agent_file=agent_file, log_dir=log_dir, env=env, cpu=parts.server_cpu
    )
    haproxy: Child | None = None
    try:
        url_port = port
        if case.via_haproxy:
            lb = LoadBalancer(
                servers=(Server(name="node-1", host="127.0.0.1", port=port),),
                port=free_port(),
                threads=1,
                log=False,
            )
            haproxy = start_haproxy(
                lb,
                config_path=log_dir / f"{case.name}-haproxy.cfg",
                log_dir=log_dir,
                cpu=parts.server_cpu,
            )
            url_port = lb.port
        sampler = ResourceSampler(server.pid).start()
        cpu_before = server.cpu_seconds()
        try:
            code, report = run_simulator(
                simulator_args(case, settings, f"ws://127.0.0.1:{url_port}/llm-websocket"),
                json_path=log_dir / f"{case.name}.json",
                log_dir=log_dir,
                cpu=parts.sim_cpu,
                timeout_s=_duration_s(case, settings) * 3 + 120,
            )
            server_cpu_s = server.cpu_seconds() - cpu_before
        finally:
            resources = sampler.stop()
        cache = cache_counters(f"http://127.0.0.1:{port}/metrics") if case.cache != "off" else {}
        server_loop = loop_health(f"http://127.0.0.1:{port}/metrics")
    finally:
        if haproxy is not None:
            haproxy.stop()
        server.stop()
    report = with_server_cpu(report, server_cpu_s)
    report = judge(msgspec.structs.replace(report, label=case.name))
    return BenchCaseResult(
        case=case,
        simulator_exit_code=code,
        report=report,
        cache=cache,
        resources=resources,
        server_loop=server_loop,
    )


def _run_failover_case(case: BenchCase, settings: BenchSettings, parts: _Parts) -> BenchCaseResult:
    """Three nodes behind HAProxy, the busiest one killed once every call has answered a
    turn on average; judged like the failover demo."""
    log_dir = parts.log_dir / case.name
    env = _server_env(case, parts)
    cluster, state = start_cluster_child(
        nodes=3,
        log_dir=log_dir,
        profile=case.profile,
        agent_file=builtin_example(AGENT_FILES[case.agent]),
        redis_url=parts.redis_url,
        env=env,
    )
    try:
        json_path = log_dir / f"{case.name}.json"
        simulator = start_simulator(
            simulator_args(case, settings, state.url),
            json_path=json_path,
            log_dir=log_dir,
            cpu=parts.sim_cpu,
        )
        try:
            kill = kill_busiest_mid_run(
                state, turns_first=case.calls, running=lambda: simulator.poll() is None
            )
        except BaseException:
            simulator.stop()
            raise
        code, report = simulator_result(
            simulator, json_path, timeout_s=settings.duration_s * 3 + 120
        )
    finally:
        stop_cluster_child(cluster)
    if kill is None:
        kill = FailoverSummary(killed_node="no node", killed_at=0.0, calls_on_killed_node=0)
    failover = summarize(
        report.reconnect_events,
        killed_node=kill.killed_node,
        killed_at=kill.killed_at,
        calls_on_node=kill.calls_on_killed_node,
    )
    report = msgspec.structs.replace(report, label=case.name, failover=failover)
    return BenchCaseResult(case=case, simulator_exit_code=code, report=judge(report))


def _run_chaos_case(case: BenchCase, settings: BenchSettings, parts: _Parts) -> BenchCaseResult:
    """``switchboard chaos`` against a 3-node cluster of the case's own (see chaos/bench.py)."""
    from switchboard.chaos.bench import as_run_report, chaos_notes, run_chaos_case

    code, chaos = run_chaos_case(
        name=case.name,
        profile=case.profile,
        calls=case.calls,
        turns=settings.turns,
        duration_s=_duration_s(case, settings),
        seed=settings.seed,
        agent_file=builtin_example(AGENT_FILES[case.agent]),
        log_dir=parts.log_dir,
    )
    return BenchCaseResult(
        case=case,
        simulator_exit_code=code,
        report=as_run_report(case.name, chaos),
        chaos=chaos_notes(case.name, chaos),
    )


def _duration_s(case: BenchCase, settings: BenchSettings) -> float:
    return max(settings.duration_s, case.min_duration_s or 0.0)


def simulator_args(case: BenchCase, settings: BenchSettings, url: str) -> list[str]:
    """The ``switchboard simulate`` options for one case (without ``--json``/``--quiet``)."""
    think_ms = settings.think_ms if case.think_ms is None else case.think_ms
    ramp_ms = settings.ramp_ms if case.ramp_ms is None else case.ramp_ms
    return [
        "--url",
        url,
        "--calls",
        str(case.calls),
        "--turns",
        str(settings.turns if case.turns is None else case.turns),
        "--think-ms",
        f"{think_ms:g}",
        "--ramp-ms",
        f"{ramp_ms:g}",
        "--barge-in-rate",
        f"{case.barge_in_rate:g}",
        "--duration",
        f"{_duration_s(case, settings):g}",
        "--seed",
        str(settings.seed),
        "--label",
        case.name,
        *(["--budget-ms", f"{case.budget_ms:g}"] if case.budget_ms is not None else []),
        "--workers",
        str(case.simulator_workers),
    ]


def with_server_cpu(report: RunReport, server_cpu_s: float) -> RunReport:
    """Attach the server's CPU over the run and the turns it bought per CPU second."""
    percent = 100.0 * server_cpu_s / report.duration_s if report.duration_s > 0 else 0.0
    return msgspec.structs.replace(
        report,
        server=ProcessStats(cpu_seconds=server_cpu_s, cpu_percent=percent),
        turns_per_core_s=report.turns / server_cpu_s if server_cpu_s > 0 else None,
    )

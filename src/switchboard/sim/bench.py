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
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import msgspec
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from switchboard.atomic_file import write_atomically
from switchboard.cluster.haproxy import HAProxyError, LoadBalancer, Server, start_haproxy
from switchboard.cluster.launch import start_cluster_child, stop_cluster_child
from switchboard.cluster.valkey import redis_url, start_valkey
from switchboard.config import BUDGET_MS, builtin_example
from switchboard.sim.bench_profiles import archive_service, event_latency
from switchboard.sim.failover import kill_busiest_mid_run, summarize
from switchboard.sim.processes import (
    Child,
    ChildError,
    free_port,
    run_simulator,
    simulator_result,
    start_fake_llm,
    start_server,
    start_simulator,
)
from switchboard.sim.resources import ResourceSampler, ServerResources
from switchboard.sim.results import FailoverSummary, ProcessStats, RunReport, TurnKindStats
from switchboard.sim.server_metrics import cache_counters, loop_health
from switchboard.sim.verdict import JUDGED_KINDS, judge

BENCH_SCHEMA_VERSION = 1
SERVER_CPU = 0
SIMULATOR_CPU = 1
AGENT_FILES = {"scripted": "receptionist.yaml", "openai": "openai-receptionist.yaml"}


class BenchCase(msgspec.Struct, frozen=True, kw_only=True):
    """One measured configuration and the targets it is held to (``None``: no target)."""

    name: str
    agent: str  # a key of AGENT_FILES
    calls: int
    barge_in_rate: float = 0.0
    min_turns_per_core_s: float | None = None
    max_ttfb_p99_ms: float | None = None
    #: the nodes' profile; ``distributed`` gets the bench's valkey-server
    profile: str = "single"
    #: the simulator reaches the node through HAProxy
    via_haproxy: bool = False
    #: a 3-node cluster behind HAProxy, the busiest node killed mid-run
    failover: bool = False
    #: turns/s per core at least this share of the named case's, in the same run
    min_turns_per_core_vs: tuple[str, float] | None = None
    #: TTFB p99 at most this many ms above the named case's, in the same run
    max_ttfb_p99_delta_vs: tuple[str, float] | None = None
    #: kill -> first answered turn after the reconnect, p99
    max_failover_p99_ms: float | None = None
    #: event-driven: the archive consumes during the run (on the simulator's core, so it
    #: measures event latency but disturbs the simulator) or only after it (counts only)
    archive_live: bool = False
    #: the fake LLM's time to first token (the "slow LLM" rows)
    ttft_ms: float = 0.0
    #: response cache of the server: off, memory or redis (the bench's valkey-server)
    cache: str = "off"
    #: target for turns answered by the exact tier (server: turn start -> first cached chunk)
    max_cached_ttfb_p99_ms: float | None = None
    #: the verdict's TTFB budget instead of the profile's (a slow LLM misses any budget by
    #: design: those rows are judged on correctness, and compared in the notes)
    budget_ms: float | None = None
    #: pong RTT p99 (the simulator pings every 2 s, as Retell does)
    max_pong_rtt_p99_ms: float | None = None
    #: calls that may fail (``None``: not a target; the verdict judges them anyway)
    max_failed_calls: int | None = None
    #: the case's own caller pause and ramp instead of the run's (``BenchSettings``)
    think_ms: float | None = None
    ramp_ms: float | None = None
    #: at least this many seconds of load, whatever the run's duration
    min_duration_s: float | None = None
    #: simulator processes (``switchboard simulate --workers``)
    simulator_workers: int = 1
    #: ``switchboard chaos`` on a 3-node cluster of its own, one fault of each kind
    chaos: bool = False


class BenchCaseResult(msgspec.Struct, kw_only=True):
    case: BenchCase
    simulator_exit_code: int
    report: RunReport
    #: the server's RSS and file descriptors before, during and after the run
    resources: ServerResources | None = None
    #: targets the case missed, as sentences (empty: all met)
    missed_targets: list[str] = msgspec.field(default_factory=list)
    #: event-driven cases: turn completed -> archived, ms (``archived``, ``p50``, ``p99``)
    event_latency_ms: dict[str, float] | None = None
    #: the server's cache counters from ``/metrics`` (hits/misses by tier, hit p99 bound)
    cache: dict[str, float] = msgspec.field(default_factory=dict)
    #: the server's event-loop lag and GC pauses from ``/metrics`` (``loop_health``)
    server_loop: dict[str, float] = msgspec.field(default_factory=dict)
    #: the chaos case: the chaos report's figures, one line each
    chaos: list[str] = msgspec.field(default_factory=list)


class BenchRun(msgspec.Struct, kw_only=True):
    schema_version: int = BENCH_SCHEMA_VERSION
    started_at: str
    #: where it ran: cores, Python, whether server and simulator were pinned
    host: dict[str, object] = msgspec.field(default_factory=dict)
    #: the knobs shared by every case (duration, turns, think time)
    settings: dict[str, object] = msgspec.field(default_factory=dict)
    results: list[BenchCaseResult] = msgspec.field(default_factory=list)
    #: cases that could not run at all (a child failed to start), with why
    errors: dict[str, str] = msgspec.field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """Every case ran and passed its verdict (targets are reported, not required)."""
        return not self.errors and all(r.report.passed for r in self.results)


DEFAULT_CASES: tuple[BenchCase, ...] = (
    BenchCase(
        name="scripted-100",
        agent="scripted",
        calls=100,
        min_turns_per_core_s=2000,
        max_ttfb_p99_ms=20,
    ),
    BenchCase(name="scripted-300", agent="scripted", calls=300, min_turns_per_core_s=2000),
    BenchCase(
        name="openai-0ms-100",
        agent="openai",
        calls=100,
        min_turns_per_core_s=700,
        max_ttfb_p99_ms=20,
    ),
    BenchCase(name="openai-0ms-300", agent="openai", calls=300, min_turns_per_core_s=700),
    BenchCase(
        name="barge-in-0.3", agent="scripted", calls=100, barge_in_rate=0.3, max_ttfb_p99_ms=20
    ),
    BenchCase(
        name="distributed-100",
        agent="scripted",
        calls=100,
        profile="distributed",
        max_ttfb_p99_ms=20,
        min_turns_per_core_vs=("scripted-100", 0.75),
    ),
    BenchCase(
        name="distributed-haproxy-100",
        agent="scripted",
        calls=100,
        profile="distributed",
        via_haproxy=True,
        max_ttfb_p99_delta_vs=("distributed-100", 1.0),
    ),
    BenchCase(
        name="scripted-5000",
        agent="scripted",
        calls=5000,
        think_ms=3000,
        ramp_ms=10_000,
        min_duration_s=30,
        simulator_workers=2,
        max_ttfb_p99_ms=100,
        max_pong_rtt_p99_ms=100,
        max_failed_calls=0,
    ),
    BenchCase(
        name="failover-3x",
        agent="scripted",
        calls=100,
        profile="distributed",
        failover=True,
        max_failover_p99_ms=2000,
    ),
    # Publishing events on top of distributed: CPU per turn +<= 10 %, TTFB p99 +<= 1 ms.
    BenchCase(
        name="event-driven-100",
        agent="scripted",
        calls=100,
        profile="event-driven",
        min_turns_per_core_vs=("distributed-100", 1 / 1.1),
        max_ttfb_p99_delta_vs=("distributed-100", 1.0),
    ),
    BenchCase(
        name="event-driven-300",
        agent="scripted",
        calls=300,
        profile="event-driven",
        max_ttfb_p99_ms=300,
    ),
    # The archive consuming live: turn completed -> archived, p50/p99.
    BenchCase(
        name="event-latency-100",
        agent="scripted",
        calls=100,
        profile="event-driven",
        archive_live=True,
    ),
    # Faults on a live cluster: one of each kind (docs/chaos.md); figures in the notes.
    BenchCase(name="chaos", agent="scripted", calls=100, profile="distributed", chaos=True),
    # The error table's "slow LLM" fix: the same run with the response cache off and on.
    BenchCase(name="slow-llm-800ms", agent="openai", calls=100, ttft_ms=800, budget_ms=2500),
    BenchCase(
        name="slow-llm-800ms-cached",
        agent="openai",
        calls=100,
        ttft_ms=800,
        cache="redis",
        max_cached_ttfb_p99_ms=5,
        budget_ms=2500,
    ),
)


class BenchSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Sizes shared by every case; shrink them for a quick look or a test."""

    duration_s: float = 20.0
    turns: int = 6
    think_ms: float = 250.0
    #: call starts are spread over this time, so a case measures steady state, not a connect storm
    ramp_ms: float = 2000.0
    seed: int = 1
    results_dir: Path = Path("bench/results")


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
        _write_run(run, settings.results_dir / name)
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


def cache_targets_missed(case: BenchCase, cache: dict[str, float]) -> list[str]:
    if case.max_cached_ttfb_p99_ms is None:
        return []
    bound = cache.get("hit_first_chunk_p99_le_ms:exact")
    if bound is not None and 0 <= bound <= case.max_cached_ttfb_p99_ms:
        return []
    shown = "no exact hits" if bound is None else _bound_text(bound)
    return [f"cached TTFB p99 {shown} > target {case.max_cached_ttfb_p99_ms:g} ms"]


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
        str(settings.turns),
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


def missed_targets(
    case: BenchCase, report: RunReport, others: Mapping[str, RunReport] | None = None
) -> list[str]:
    """The targets ``case`` missed; relative ones compare with ``others`` (the same run's
    reports by case name) and count as missed when their reference did not run."""
    missed = []
    others = others or {}
    if case.min_turns_per_core_vs is not None:
        name, share = case.min_turns_per_core_vs
        ratio = _turns_per_core_ratio(report, others.get(name))
        if ratio is None or ratio < share:
            shown = "unknown" if ratio is None else f"{ratio:.0%}"
            missed.append(f"turns/s per core {shown} of {name}'s < target {share:.0%}")
    if case.max_ttfb_p99_delta_vs is not None:
        name, delta_ms = case.max_ttfb_p99_delta_vs
        delta = _ttfb_p99_delta(report, others.get(name))
        if delta is None or delta > delta_ms:
            shown = "unknown" if delta is None else f"{delta:+.2f} ms"
            missed.append(f"TTFB p99 {shown} over {name}'s > target +{delta_ms:g} ms")
    if case.max_failover_p99_ms is not None:
        f = report.failover
        p99 = f.kill_to_answer.p99_ms if f is not None and f.kill_to_answer.count else None
        if p99 is None or p99 > case.max_failover_p99_ms:
            shown = "unknown" if p99 is None else f"{p99:.0f} ms"
            missed.append(
                f"kill -> first answered turn p99 {shown} > target {case.max_failover_p99_ms:g} ms"
            )
    if case.max_pong_rtt_p99_ms is not None:
        pong = report.pong_rtt
        if not pong.count or pong.p99_ms > case.max_pong_rtt_p99_ms:
            shown = f"{pong.p99_ms:.1f} ms" if pong.count else "unknown"
            missed.append(f"pong RTT p99 {shown} > target {case.max_pong_rtt_p99_ms:g} ms")
    if case.max_failed_calls is not None:
        failed = sum(report.calls_failed.values())
        if failed > case.max_failed_calls:
            missed.append(f"{failed} failed calls > target {case.max_failed_calls}")
    if case.min_turns_per_core_s is not None:
        got = report.turns_per_core_s
        if got is None or got < case.min_turns_per_core_s:
            shown = "unknown" if got is None else f"{got:.0f}"
            missed.append(f"turns/s per core {shown} < target {case.min_turns_per_core_s:g}")
    if case.max_ttfb_p99_ms is not None:
        worst = _worst_judged_p99(report)
        if worst is None or worst > case.max_ttfb_p99_ms:
            shown = "unknown" if worst is None else f"{worst:.1f} ms"
            missed.append(f"TTFB p99 {shown} > target {case.max_ttfb_p99_ms:g} ms")
    return missed


def _turns_per_core_ratio(report: RunReport, reference: RunReport | None) -> float | None:
    if reference is None or not reference.turns_per_core_s or report.turns_per_core_s is None:
        return None
    return report.turns_per_core_s / reference.turns_per_core_s


def _ttfb_p99_delta(report: RunReport, reference: RunReport | None) -> float | None:
    mine = _worst_judged_p99(report)
    theirs = _worst_judged_p99(reference) if reference is not None else None
    if mine is None or theirs is None:
        return None
    return mine - theirs


def comparisons(run: BenchRun) -> list[str]:
    """The relative figures, as sentences: share of the single profile's turns per core,
    TTFB p99 added by the load balancer, kill -> first answered turn."""
    reports = {r.case.name: r.report for r in run.results}
    lines = []
    for result in run.results:
        case, report = result.case, result.report
        if case.min_turns_per_core_vs is not None:
            name, share = case.min_turns_per_core_vs
            ratio = _turns_per_core_ratio(report, reports.get(name))
            if ratio is not None:
                lines.append(
                    f"{case.name}: turns/s per core {ratio:.0%} of {name}'s (target >= {share:.0%})"
                )
        if case.max_ttfb_p99_delta_vs is not None:
            name, delta_ms = case.max_ttfb_p99_delta_vs
            delta = _ttfb_p99_delta(report, reports.get(name))
            if delta is not None:
                lines.append(
                    f"{case.name}: TTFB p99 {delta:+.2f} ms over {name}'s "
                    f"(target <= +{delta_ms:g} ms)"
                )
        f = report.failover
        if f is not None:
            k = f.kill_to_answer
            lines.append(
                f"{case.name}: kill -9 of {f.killed_node} ({f.calls_on_killed_node} calls): "
                f"{f.calls_resumed}/{f.calls_lost_socket} resumed; kill -> first answered "
                f"turn p50 {k.p50_ms:.0f} ms, p99 {k.p99_ms:.0f} ms ({k.count} sockets)"
            )
    return lines


def bench_table(run: BenchRun) -> Table:
    """One row per case and judged turn kind: throughput, cost per turn, latency, verdict."""
    table = Table(title="switchboard bench (ms)", box=box.SIMPLE_HEAD, title_justify="left")
    for name in ("case", "kind", "calls", "turns/s"):
        table.add_column(name, justify="left" if name in ("case", "kind") else "right")
    for name in ("TTFB p50", "p90", "p99", "TTC p50", "p90", "p99"):
        table.add_column(name, justify="right")
    for name in ("server CPU", "turns/core·s", "targets", "verdict"):
        table.add_column(name, justify="right")
    for result in run.results:
        r = result.report
        judged: list[TurnKindStats | None] = [
            k for k in r.per_kind if k.kind in JUDGED_KINDS and k.turns
        ]
        for i, kind in enumerate(judged or [None]):
            first = i == 0
            table.add_row(
                Text(result.case.name if first else ""),
                Text(kind.kind if kind else "-"),
                str(r.calls_started) if first else "",
                f"{r.turns_per_s:.0f}" if first else "",
                *_latency_cells(kind),
                _server_cpu(r) if first else "",
                f"{r.turns_per_core_s:.0f}" if first and r.turns_per_core_s else "",
                _targets_cell(result) if first else Text(""),
                _verdict_cell(r) if first else Text(""),
            )
    for name in run.errors:
        table.add_row(Text(name), *[""] * 12, Text("ERROR", style="red"))
    return table


def describe_loop(loop: dict[str, float]) -> str:
    """One line on the server's own waits: what of a latency tail is the server's."""

    def bound(ms: float) -> str:
        return f"<= {ms:g} ms" if ms >= 0 else "over 2.5 s"

    line = (
        f"server event loop lag p99 {bound(loop.get('lag_p99_le_ms', -1))}, "
        f"max {bound(loop.get('lag_max_le_ms', -1))}"
    )
    gens = [g for g in ("0", "1", "2") if loop.get(f"gc_count:{g}")]
    if gens:
        counts = ", ".join(f"gen{g} {loop[f'gc_count:{g}']:.0f}" for g in gens)
        total_ms = sum(loop.get(f"gc_ms:{g}", 0.0) for g in gens)
        longest = max(loop.get(f"gc_max_le_ms:{g}", 0.0) for g in gens)
        line += f"; GC {counts}: {total_ms:.0f} ms in all, longest {bound(longest)}"
    return line


def bench_notes(run: BenchRun) -> list[Text]:
    """What the table cannot hold: targets, missed targets, verdict reasons, warnings, errors."""
    notes = [Text(f"targets: {_targets_text(run)}", style="dim")]
    notes += [Text(line) for line in comparisons(run)]
    for result in run.results:
        name = result.case.name
        if result.resources is not None:
            notes.append(Text(f"{name}: {result.resources.describe()}", style="dim"))
            if result.resources.fds_leaked:
                leaked = result.resources.fds_leaked
                notes.append(Text(f"{name}: {leaked} file descriptors not closed", style="red"))
        if result.server_loop:
            notes.append(Text(f"{name}: {describe_loop(result.server_loop)}", style="dim"))
        for missed in result.missed_targets:
            notes.append(Text(f"{name}: target missed: {missed}", style="red"))
        for reason in result.report.verdict_reasons:
            notes.append(Text(f"{name}: FAIL: {reason}", style="red"))
        for warning in result.report.verdict_warnings:
            notes.append(Text(f"{name}: warning: {warning}", style="yellow"))
        latency = result.event_latency_ms
        if latency is not None:
            archived = f"{latency.get('archived', 0):.0f} of {result.report.turns} turns archived"
            if "p50" in latency:
                shown = f"p50 {latency['p50']:.1f}, p99 {latency['p99']:.1f}"
                line = f"{name}: event latency (turn completed -> archived) ms: {shown}; {archived}"
            else:
                line = f"{name}: archive drained after the run: {archived}"
            notes.append(Text(line))
        notes.extend(Text(line) for line in result.chaos)
        if result.simulator_exit_code not in (0, 1):
            notes.append(Text(f"{name}: simulator exit code {result.simulator_exit_code}"))
    for name, error in run.errors.items():
        notes.append(Text(f"{name}: could not run: {error}", style="red"))
    notes.extend(cache_notes(run))
    return notes


def cache_notes(run: BenchRun) -> list[Text]:
    """Cache figures per cached case, and each slow-LLM pair side by side (off vs on)."""
    notes = []
    by_name = {r.case.name: r for r in run.results}
    for result in run.results:
        c = result.cache
        if not c:
            continue
        hits = ", ".join(
            f"{tier} {c.get(f'hits:{tier}', 0):.0f}"
            for tier in ("exact", "semantic", "single_flight")
        )
        p99s = ", ".join(
            f"{tier} {_bound_text(c[f'hit_first_chunk_p99_le_ms:{tier}'])}"
            for tier in ("exact", "semantic")
            if f"hit_first_chunk_p99_le_ms:{tier}" in c
        )
        notes.append(
            Text(
                f"{result.case.name}: cache hits {hits}; misses {c.get('misses:exact', 0):.0f}; "
                f"hit rate {100 * c.get('hit_rate', 0):.0f}% of looked-up turns "
                f"({100 * c.get('hit_rate_all_turns', 0):.0f}% of all); cached first chunk p99 "
                f"(server) {p99s or 'n/a'}; backend errors {c.get('errors:unavailable', 0):.0f}"
            )
        )
        base = by_name.get(result.case.name.removesuffix("-cached"))
        if base is not None and base is not result:
            off, on = _response_ttfb(base.report), _response_ttfb(result.report)
            if off and on:
                notes.append(
                    Text(
                        f"{base.case.name} (LLM TTFT {base.case.ttft_ms:g} ms), TTFB p50/p99: "
                        f"cache off {off[0]:.0f}/{off[1]:.0f} ms, cache on {on[0]:.0f}/"
                        f"{on[1]:.0f} ms; budget {BUDGET_MS['distributed']} ms"
                    )
                )
    return notes


def _bound_text(bound: float) -> str:
    return "> 1000 ms" if bound < 0 else f"<= {bound:g} ms"


def _response_ttfb(report: RunReport) -> tuple[float, float] | None:
    for kind in report.per_kind:
        if kind.kind == "response" and kind.ttfb.count:
            return kind.ttfb.p50_ms, kind.ttfb.p99_ms
    return None


def _targets_text(run: BenchRun) -> str:
    parts = []
    for result in run.results:
        case = result.case
        wanted = []
        if case.min_turns_per_core_s is not None:
            wanted.append(f">= {case.min_turns_per_core_s:g} turns/core·s")
        if case.max_ttfb_p99_ms is not None:
            wanted.append(f"TTFB p99 <= {case.max_ttfb_p99_ms:g} ms")
        if case.min_turns_per_core_vs is not None:
            name, share = case.min_turns_per_core_vs
            wanted.append(f">= {share:.0%} of {name}'s turns/core·s")
        if case.max_ttfb_p99_delta_vs is not None:
            name, delta_ms = case.max_ttfb_p99_delta_vs
            wanted.append(f"TTFB p99 <= {name}'s + {delta_ms:g} ms")
        if case.max_failover_p99_ms is not None:
            wanted.append(f"kill -> answered p99 <= {case.max_failover_p99_ms:g} ms")
        if case.max_cached_ttfb_p99_ms is not None:
            wanted.append(f"cached TTFB p99 <= {case.max_cached_ttfb_p99_ms:g} ms")
        if case.max_pong_rtt_p99_ms is not None:
            wanted.append(f"pong RTT p99 <= {case.max_pong_rtt_p99_ms:g} ms")
        if case.max_failed_calls is not None:
            wanted.append(f"<= {case.max_failed_calls} failed calls")
        if wanted:
            parts.append(f"{case.name} {' and '.join(wanted)}")
    return "; ".join(parts) or "none"


def _latency_cells(kind: TurnKindStats | None) -> list[str]:
    if kind is None:
        return ["-"] * 6
    values = (
        kind.ttfb.p50_ms,
        kind.ttfb.p90_ms,
        kind.ttfb.p99_ms,
        kind.ttc.p50_ms,
        kind.ttc.p90_ms,
        kind.ttc.p99_ms,
    )
    return [f"{v:.2f}" if v < 10 else f"{v:.1f}" for v in values]


def _server_cpu(report: RunReport) -> str:
    return "" if report.server is None else f"{report.server.cpu_percent:.0f}%"


def _targets_cell(result: BenchCaseResult) -> Text:
    case = result.case
    targets = (
        case.min_turns_per_core_s,
        case.max_ttfb_p99_ms,
        case.min_turns_per_core_vs,
        case.max_ttfb_p99_delta_vs,
        case.max_failover_p99_ms,
        case.max_cached_ttfb_p99_ms,
        case.max_pong_rtt_p99_ms,
        case.max_failed_calls,
    )
    if all(t is None for t in targets):
        return Text("-")
    if result.missed_targets:
        return Text("MISSED", style="bold red")
    return Text("met", style="green")


def _verdict_cell(report: RunReport) -> Text:
    text = Text("PASS" if report.passed else "FAIL", style="green" if report.passed else "red")
    if report.verdict_warnings:
        text.append(" !", style="yellow")
    return text


def _worst_judged_p99(report: RunReport | None) -> float | None:
    if report is None:
        return None
    p99s = [k.ttfb.p99_ms for k in report.per_kind if k.kind in JUDGED_KINDS and k.ttfb.count]
    return max(p99s) if p99s else None


def _write_run(run: BenchRun, path: Path) -> None:
    write_atomically(path, msgspec.json.format(msgspec.json.encode(run), indent=2))


def load_bench(path: Path) -> BenchRun:
    """Read a bench JSON file back (e.g. to compare with a reference run)."""
    return msgspec.json.decode(path.read_bytes(), type=BenchRun)

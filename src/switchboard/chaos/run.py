"""One chaos run: read the cluster, plan the faults, play the control run, then play the
same calls again while the nemesis works, and judge.

The imperative shell around the pure parts: ``schedule.plan_schedule`` decides,
``checker.check`` judges; this module starts nothing but the calls and the processes the
nemesis restarts.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import msgspec

from switchboard.chaos.checker import Findings, Limits, check, control_clean
from switchboard.chaos.event_checker import EventFindings, check_events
from switchboard.chaos.event_evidence import EvidenceError, gather, pipeline_parts
from switchboard.chaos.generator import Generator, escalating_calls, plan_calls
from switchboard.chaos.history import FaultEvent, History
from switchboard.chaos.nemesis import Nemesis
from switchboard.chaos.processes import ClusterProcess, ProcessError, read_valkey
from switchboard.chaos.schedule import (
    EVENT_PIPELINE,
    ScheduledFault,
    ScheduleError,
    default_spec,
    parse_spec,
    plan_schedule,
)
from switchboard.cluster.plan import ClusterState, read_state, write_state

REPORT_SCHEMA_VERSION = 1
#: How long after the calls end the nemesis may take to finish its fault in hand.
NEMESIS_GRACE_S = 120.0
#: The bus's default ``bus_max_len`` (a node's ``SWITCHBOARD_BUS_MAX_LEN`` overrides it).
DEFAULT_BUS_MAX_LEN = 100_000


class ChaosInputError(ValueError):
    """Bad input: no such state file, a cluster that cannot be read, a bad fault spec."""


@dataclass(slots=True)
class ChaosOptions:
    state_file: Path
    seed: int = 1
    calls: int = 20
    turns: int = 6
    faults: str | None = None
    duration_s: float = 30.0
    max_recovery_s: float = 10.0
    #: calls that ask for the manager twice (the escalation service hands them over)
    escalations: int = 0
    #: how long the event pipeline may take to catch up after the calls end
    settle_s: float = 180.0

    def __post_init__(self) -> None:
        if self.calls < 1:
            raise ChaosInputError("--calls must be at least 1")
        if self.turns < 1:
            raise ChaosInputError("--turns must be at least 1")
        if self.duration_s <= 0:
            raise ChaosInputError("--duration must be positive")
        if self.max_recovery_s <= 0:
            raise ChaosInputError("--max-recovery must be positive")
        if not 0 <= self.escalations <= self.calls:
            raise ChaosInputError("--escalations must be between 0 and --calls")
        if self.settle_s <= 0:
            raise ChaosInputError("--settle must be positive")


class ProcessStarted(msgspec.Struct, kw_only=True):
    name: str
    pid: int


class ChaosReport(msgspec.Struct, kw_only=True):
    """The JSON report: the figures, the verdict, and both histories to judge again."""

    schema_version: int = REPORT_SCHEMA_VERSION
    seed: int
    profile: str
    url: str
    calls: int
    turns: int
    duration_s: float
    schedule: list[ScheduledFault]
    findings: Findings
    history: History
    control: History
    #: processes the runner started again (the cluster process does not own them)
    processes_started: list[ProcessStarted] = msgspec.field(default_factory=list)
    #: the event pipeline's verdict (event-driven runs with pipeline faults or
    #: escalating calls); its reasons are among ``findings.reasons`` too
    events: EventFindings | None = None
    escalations: int = 0


def load_cluster(path: Path) -> ClusterState:
    try:
        return read_state(path)
    except FileNotFoundError:
        raise ChaosInputError(f"no cluster state file at {path}") from None
    except (OSError, msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ChaosInputError(f"cannot read the cluster state file {path}: {exc}") from None


def cluster_processes(state: ClusterState) -> dict[str, ClusterProcess]:
    """Every process of the cluster the nemesis may act on, read from ``/proc`` now."""
    procs: dict[str, ClusterProcess] = {}
    try:
        for node in state.nodes:
            procs[node.node_id] = ClusterProcess.read(
                node.node_id,
                node.pid,
                port=node.port,
                ready_url=f"http://127.0.0.1:{node.port}/readyz",
            )
        procs["haproxy"] = ClusterProcess.read(
            "haproxy", state.haproxy.pid, port=state.haproxy.port
        )
        if state.valkey is not None:
            assert state.redis_url is not None
            procs["redis"] = read_valkey(
                "redis", state.valkey.pid, port=state.valkey.port, url=state.redis_url
            )
        for name, pid in state.services.items():
            if name == "tansu":
                port = _bus_port(state.bus_url)
                procs["bus"] = ClusterProcess.read("bus", pid, port=port)
            else:
                ready = state.service_metrics.get(name)
                if name == "analytics" and state.dashboard_url:
                    ready = f"{state.dashboard_url.rstrip('/')}/api/summary"
                procs[name] = ClusterProcess.read(name, pid, ready_url=ready)
    except ProcessError as exc:
        raise ChaosInputError(f"{exc}: is the cluster running, on this machine?") from None
    if "bus" not in procs and "redis" in procs and _bus_on_own_redis(state):
        procs["bus"] = procs["redis"]  # --bus redis: the cluster's valkey-server is the bus
    return procs


def _bus_on_own_redis(state: ClusterState) -> bool:
    """The bus is Redis Streams on the cluster's own valkey-server."""
    return (
        state.valkey is not None
        and state.bus_url is not None
        and state.redis_url is not None
        and state.bus_url.split("?")[0] == state.redis_url
    )


def _bus_port(bus_url: str | None) -> int | None:
    if bus_url and bus_url.startswith("kafka://"):
        _, _, port = bus_url.rpartition(":")
        if port.isdigit():
            return int(port)
    return None


def make_schedule(options: ChaosOptions, state: ClusterState) -> list[ScheduledFault]:
    has_broker = "tansu" in state.services
    has_bus = has_broker or _bus_on_own_redis(state)
    spec = options.faults or default_spec(state.profile, has_broker)
    if options.faults is None and state.valkey is None:
        spec = ",".join(k for k in spec.split(",") if not k.startswith("redis-"))
    try:
        return plan_schedule(
            parse_spec(spec),
            seed=options.seed,
            duration_s=options.duration_s,
            nodes=[n.node_id for n in state.nodes],
            services=list(state.services),
            has_redis=state.valkey is not None,
            has_broker=has_broker,
            has_bus=has_bus,
        )
    except ScheduleError as exc:
        raise ChaosInputError(str(exc)) from None


def run_chaos(options: ChaosOptions, log: Callable[[str], None] = print) -> ChaosReport:
    """The whole run; ``ChaosInputError`` on bad input before anything is touched."""
    state = load_cluster(options.state_file)
    schedule = make_schedule(options, state)
    processes = cluster_processes(state)
    judge_events = state.profile == "event-driven" and (
        options.escalations > 0 or any(f.kind in EVENT_PIPELINE for f in schedule)
    )
    parts = None
    if judge_events:
        try:
            parts = pipeline_parts(state, processes)
        except EvidenceError as exc:
            raise ChaosInputError(str(exc)) from None
    planned = plan_calls(options.seed, options.calls, options.turns, options.escalations)
    log(f"control run: {options.calls} calls of {options.turns} turns, no faults")
    control = asyncio.run(Generator(state.url, options.seed, planned, None, state.profile).run())
    if control_clean(control):
        log(f"chaos run: {len(schedule)} faults over {options.duration_s:g} s")
        generator = Generator(state.url, options.seed, planned, options.duration_s, state.profile)
        history, faults = asyncio.run(
            _chaos(generator, schedule, processes, state, log, options.state_file)
        )
        history.faults = faults
    else:
        log("the control run was not clean: no fault is run against an unhealthy cluster")
        now = time.time()
        history = History(seed=options.seed, started_at=now, ended_at=now)
    findings = check(history, control, Limits(max_recovery_s=options.max_recovery_s))
    events: EventFindings | None = None
    if parts is not None and history.calls:
        log("waiting for the event pipeline to catch up")
        try:
            evidence = gather(
                history,
                parts,
                escalating=escalating_calls(options.calls, options.escalations),
                settle_s=options.settle_s,
                log=log,
            )
            events = check_events(evidence)
        except EvidenceError as exc:
            events = EventFindings(passed=False, reasons=[str(exc)])
        findings.reasons += [f"events: {r}" for r in events.reasons]
        findings.passed = not findings.reasons
    started = []
    for p in {id(p): p for p in processes.values()}.values():
        if p.restarts and not p.gone():
            started.append(ProcessStarted(name=p.name, pid=p.pid))
    if started:
        _update_state_file(options.state_file, processes)
    return ChaosReport(
        seed=options.seed,
        profile=state.profile,
        url=state.url,
        calls=options.calls,
        turns=options.turns,
        duration_s=options.duration_s,
        schedule=schedule,
        findings=findings,
        history=history,
        control=control,
        processes_started=started,
        events=events,
        escalations=options.escalations,
    )


def bus_max_len(processes: dict[str, ClusterProcess], state: ClusterState) -> int | None:
    """The nodes' ``bus_max_len`` on a Redis stream bus (``None`` on Kafka)."""
    if not state.bus_url or not state.bus_url.startswith(("redis://", "rediss://")):
        return None
    for node in state.nodes:
        proc = processes.get(node.node_id)
        value = proc.env.get("SWITCHBOARD_BUS_MAX_LEN") if proc is not None else None
        if value and value.isdigit():
            return int(value)
    return DEFAULT_BUS_MAX_LEN


async def _chaos(
    generator: Generator,
    schedule: list[ScheduledFault],
    processes: dict[str, ClusterProcess],
    state: ClusterState,
    log: Callable[[str], None],
    state_file: Path,
) -> tuple[History, list[FaultEvent]]:
    loop = asyncio.get_running_loop()
    namespace = _namespace(processes, state)
    nemesis = Nemesis(
        processes,
        generator,
        loop,
        log_dir=Path(state.log_dir) if state.log_dir else Path.cwd(),
        redis_url=state.redis_url,
        namespace=namespace,
        log=log,
        bus_url=state.bus_url,
        bus_max_len=bus_max_len(processes, state),
        on_restart=lambda: _update_state_file(state_file, processes),
    )
    t0 = time.time()
    thread = threading.Thread(target=nemesis.run, args=(schedule, t0), name="nemesis", daemon=True)
    thread.start()
    try:
        history = await generator.run()
    finally:
        # The faults still to come are left out; the one in hand is finished (a pause
        # lifted, a process restarted) before the run is judged.
        nemesis.stopping.set()
        await asyncio.to_thread(thread.join, NEMESIS_GRACE_S)
    return history, nemesis.events


def _namespace(processes: dict[str, ClusterProcess], state: ClusterState) -> str:
    for node in state.nodes:
        proc = processes.get(node.node_id)
        if proc is not None and proc.env.get("SWITCHBOARD_REDIS_NAMESPACE"):
            return proc.env["SWITCHBOARD_REDIS_NAMESPACE"]
    return "switchboard:"


def _update_state_file(path: Path, processes: dict[str, ClusterProcess]) -> None:
    """Point the state file at the restarted processes, so ``pids`` stays the truth for
    whoever stops the cluster's leftovers. Left alone if the cluster has removed it."""
    try:
        state = read_state(path)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return
    old_to_new: dict[int, int] = {}
    for node in state.nodes:
        proc = processes.get(node.node_id)
        if proc is not None and proc.restarts:
            old_to_new[node.pid] = proc.pid
            node.pid = proc.pid
    if state.valkey is not None and processes.get("redis") and processes["redis"].restarts:
        old_to_new[state.valkey.pid] = processes["redis"].pid
        state.valkey.pid = processes["redis"].pid
    if processes["haproxy"].restarts:
        old_to_new[state.haproxy.pid] = processes["haproxy"].pid
        state.haproxy.pid = processes["haproxy"].pid
    for name in list(state.services):
        proc = processes.get("bus" if name == "tansu" else name)
        if proc is not None and proc.restarts:
            old_to_new[state.services[name]] = proc.pid
            state.services[name] = proc.pid
    state.pids = [old_to_new.get(pid, pid) for pid in state.pids]
    write_state(state, path)

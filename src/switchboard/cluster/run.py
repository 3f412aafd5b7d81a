"""``switchboard cluster``: valkey-server, N ``switchboard serve`` nodes and HAProxy, in the
foreground, until SIGTERM or SIGINT.

Start order is dependency order (Redis; with ``--profile event-driven`` the bus and the
services, see services.py; the nodes; then the load balancer once every node is ready);
stop order is the reverse, and the nodes drain first: each gets one SIGTERM at the same
time, stops being ready (HAProxy takes it out within two checks), lets its calls finish
until its ``drain_timeout_s`` and then drops the rest without a close frame so the
caller reconnects. Every process is our child in its own process group (``Child``), so
stopping it leaves nothing behind, and a failed start stops what had already started.

The nodes inherit this process's environment, so ``SWITCHBOARD_*`` settings (drain
timeout, log level, max calls) apply to all of them. Processes that ``switchboard chaos``
started again after killing them are listed in the state file, not among the children:
they are stopped too (nodes and services before the children, the rest after them).
"""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import msgspec
import psutil

from switchboard.cluster.haproxy import start_haproxy
from switchboard.cluster.plan import (
    ClusterPlan,
    ClusterState,
    ProcessInfo,
    cluster_state,
    node_argv,
    plan_cluster,
    read_state,
    write_state,
)
from switchboard.cluster.processes import (
    SWITCHBOARD_ARGV,
    Child,
    ChildError,
    free_port,
    wait_http_ready,
)
from switchboard.cluster.services import BusKind, EventStack, start_event_stack
from switchboard.cluster.valkey import redis_url as valkey_url
from switchboard.cluster.valkey import start_valkey
from switchboard.config import Profile
from switchboard.ports import ensure_free

#: How long a node may take beyond its own drain timeout before it is killed.
STOP_GRACE_S = 10.0


@dataclass(slots=True)
class ClusterOptions:
    nodes: int = 3
    port: int = 8080
    profile: Profile = "distributed"
    agent_file: Path | None = None
    config: Path | None = None
    redis_url: str | None = None
    state_file: Path | None = None
    log_dir: Path | None = None
    bind_host: str = "127.0.0.1"
    #: upper bound of a node's drain on stop (its own ``drain_timeout_s`` decides earlier)
    drain_deadline_s: float = 60.0
    ready_deadline_s: float = 60.0
    #: event-driven profile: the bus (see cluster/services.py), escalation rules, dashboard
    bus: BusKind = "kafka"
    escalation_rules: Path | None = None
    dashboard_port: int | None = None


@dataclass(slots=True)
class Cluster:
    """A running cluster: its children, and the state file's content."""

    plan: ClusterPlan
    state: ClusterState
    valkey: Child | None
    nodes: list[Child]
    haproxy: Child
    events: EventStack | None = None
    _stopped: bool = field(default=False)

    def children(self) -> list[Child]:
        extra = self.events.children() if self.events else []
        return [*([self.valkey] if self.valkey else []), *extra, *self.nodes, self.haproxy]

    def stop(self, drain_deadline_s: float = 60.0) -> None:
        """Drain the nodes (all at once), then stop HAProxy and Redis."""
        if self._stopped:
            return
        self._stopped = True
        stop_children(self.nodes, self.haproxy, self.valkey, drain_deadline_s, self.events)


def stop_children(
    nodes: list[Child],
    haproxy: Child | None,
    valkey: Child | None,
    drain_deadline_s: float,
    events: EventStack | None = None,
) -> None:
    for node in nodes:
        node.send_signal(signal.SIGTERM)  # one signal: a second one skips the drain
    for node in nodes:
        with contextlib.suppress(ChildError):
            node.wait(drain_deadline_s + STOP_GRACE_S)
        node.stop()  # reaps it, or kills it if it overran, and anything left in its group
    # The load balancer last but one: a node's dropped calls reconnect through it.
    if haproxy is not None:
        haproxy.stop()
    for child in events.children() if events else []:  # services, then the broker
        child.stop()
    if valkey is not None:
        valkey.stop()


def registry_path(port: int) -> Path:
    """Where the cluster on ``port`` leaves its pid and state file, so a second one started
    on the same port can say which cluster holds it."""
    return Path(tempfile.gettempdir()) / f"switchboard-cluster-{port}.json"


def _holder(port: int) -> str | None:
    """The running cluster that registered ``port``, described for a person, if any."""
    try:
        entry = msgspec.json.decode(registry_path(port).read_bytes(), type=dict[str, object])
        pid = int(str(entry["pid"]))
        if "cluster" not in psutil.Process(pid).cmdline():
            return None  # the pid was reused by something else
    except (OSError, ValueError, KeyError, msgspec.DecodeError, psutil.Error):
        return None
    where = entry.get("state_file")
    detail = f"state file {where}" if where else f"logs in {entry.get('log_dir')}"
    return f"switchboard cluster pid {pid} ({detail})"


def check_ports(options: ClusterOptions) -> None:
    """Refuse to start anything when a port the cluster listens on is taken
    (``PortInUse`` names the port and, for another cluster, its state file)."""
    ensure_free(options.bind_host, options.port, _holder(options.port))
    if options.dashboard_port is not None:
        ensure_free("127.0.0.1", options.dashboard_port)


def register(options: ClusterOptions, cluster: Cluster) -> Path:
    path = registry_path(options.port)
    entry = {
        "pid": os.getpid(),
        "state_file": str(options.state_file.resolve()) if options.state_file else None,
        "log_dir": cluster.state.log_dir,
    }
    path.write_bytes(msgspec.json.encode(entry))
    return path


def start_cluster(options: ClusterOptions, log: Callable[[str], None] = print) -> Cluster:
    """Start everything and return once a request through HAProxy reaches a ready node."""
    check_ports(options)
    log_dir = options.log_dir or Path(tempfile.mkdtemp(prefix="switchboard-cluster-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    plan = plan_cluster(
        nodes=options.nodes,
        port=options.port,
        node_ports=distinct_free_ports(options.nodes, avoid={options.port}),
        profile=options.profile,
        bind_host=options.bind_host,
    )
    valkey: Child | None = None
    nodes: list[Child] = []
    haproxy: Child | None = None
    events: EventStack | None = None
    try:
        redis = options.redis_url
        if redis is None:
            valkey = start_valkey(log_dir=log_dir, ready_deadline_s=options.ready_deadline_s)
            redis = valkey_url(valkey)
            log(f"valkey-server pid {valkey.pid} at {redis}")
        if options.profile == "event-driven":
            events = start_event_stack(
                kind=options.bus,
                redis_url=redis,
                log_dir=log_dir,
                rules=options.escalation_rules,
                ready_deadline_s=options.ready_deadline_s,
                dashboard_port=options.dashboard_port,
            )
            for child in events.children():
                log(f"{child.name} pid {child.pid}")
            log(f"event bus {events.bus_url}; dashboard {events.dashboard_url}")
        for node in plan.nodes:
            argv = node_argv(
                plan,
                node,
                redis_url=redis,
                agent_file=options.agent_file,
                config=options.config,
                bus_url=events.bus_url if events else None,
            )
            nodes.append(
                Child(
                    node.node_id,
                    [*SWITCHBOARD_ARGV, *argv],
                    log_path=log_dir / f"{node.node_id}.log",
                    port=node.port,
                    # its own spill directory: never another cluster's stale spills
                    env={"SWITCHBOARD_OUTBOX_DIR": str(log_dir / f"outbox-{node.node_id}")},
                )
            )
        for child in nodes:  # started together, awaited in turn
            wait_http_ready(
                child, f"http://127.0.0.1:{child.port}/readyz", options.ready_deadline_s
            )
            log(f"{child.name} pid {child.pid} on port {child.port}")
        config_path = log_dir / "haproxy.cfg"
        haproxy = start_haproxy(
            plan.load_balancer,
            config_path=config_path,
            log_dir=log_dir,
            ready_deadline_s=options.ready_deadline_s,
        )
        log(f"haproxy pid {haproxy.pid} on port {plan.load_balancer.port} ({config_path})")
        state = cluster_state(
            plan,
            node_pids=[n.pid for n in nodes],
            haproxy_pid=haproxy.pid,
            valkey=ProcessInfo(pid=valkey.pid, port=valkey.port) if valkey else None,
            redis_url=redis,
            haproxy_cfg=config_path,
            log_dir=log_dir,
            cluster_pid=os.getpid(),
        )
        if events is not None:
            state.bus_url = events.bus_url
            state.archive_db = str(events.archive_db)
            state.dashboard_url = events.dashboard_url
            state.services = {c.name: c.pid for c in events.children()}
            state.service_metrics = dict(events.metrics_urls)
            state.pids += list(state.services.values())
    except BaseException:
        stop_children(nodes, haproxy, valkey, drain_deadline_s=0.0, events=events)
        raise
    return Cluster(
        plan=plan, state=state, valkey=valkey, nodes=nodes, haproxy=haproxy, events=events
    )


def distinct_free_ports(count: int, avoid: set[int]) -> list[int]:
    """``count`` free loopback ports, distinct from each other and from ``avoid``."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in avoid and port not in ports:
            ports.append(port)
    return ports


def run_cluster(
    options: ClusterOptions,
    log: Callable[[str], None] = print,
    announce: Callable[[str], None] = print,
) -> int:
    """The ``switchboard cluster`` command: start, ``announce`` the WebSocket URL (on its
    own line, for scripts), wait for a signal, stop.

    Returns the exit code: 0 after a requested stop, 130 when a signal came during the
    start (what had started is stopped).
    """
    stop = threading.Event()
    watching = threading.Event()
    with _stop_on_signals(stop, watching):
        try:
            cluster = start_cluster(options, log)
        except KeyboardInterrupt:
            log("interrupted while starting; stopped what had started")
            return 130
        registered: Path | None = None
        try:
            registered = register(options, cluster)
            if options.state_file is not None:
                write_state(cluster.state, options.state_file)
            announce(cluster.state.url)
            log(f"WebSocket URL: {cluster.state.url}")
            log(f"webhook URL: {cluster.state.webhook_url}")
            if cluster.state.dashboard_url:
                log(f"dashboard: {cluster.state.dashboard_url}")
            if options.state_file is not None:
                log(f"state file: {options.state_file}")
            log("SIGTERM or Ctrl-C drains the nodes and stops everything.")
            watching.set()
            _watch(cluster, stop, log)
            log("stopping: draining the nodes")
        finally:
            watching.clear()
            first, last = adopted_processes(options.state_file, cluster)
            stop_adopted(first, STOP_GRACE_S + options.drain_deadline_s, log)
            cluster.stop(options.drain_deadline_s)
            stop_adopted(last, STOP_GRACE_S, log)
            if options.state_file is not None:
                options.state_file.unlink(missing_ok=True)
            if registered is not None:
                registered.unlink(missing_ok=True)
    log("stopped")
    return 0


def adopted_processes(
    state_file: Path | None, cluster: Cluster
) -> tuple[list[psutil.Process], list[psutil.Process]]:
    """Processes the state file lists that the cluster did not start (``switchboard
    chaos`` restarts what it kills and writes the new pids there): the nodes and services,
    stopped before the cluster's own children while Redis and the bus still run, and the
    rest (HAProxy, Redis, the broker), stopped after them. Only processes started after
    the cluster itself count, so a pid reused by something else is left alone."""
    if state_file is None:
        return [], []
    try:
        state = read_state(state_file)
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return [], []
    ours = {c.pid for c in cluster.children()}
    early = {n.pid for n in state.nodes}
    early |= {pid for name, pid in state.services.items() if name != "tansu"}
    born = psutil.Process().create_time()
    first: list[psutil.Process] = []
    last: list[psutil.Process] = []
    for pid in set(state.pids) - ours:
        with contextlib.suppress(psutil.Error):
            process = psutil.Process(pid)
            if process.create_time() >= born:
                (first if pid in early else last).append(process)
    return first, last


def stop_adopted(
    processes: list[psutil.Process], deadline_s: float, log: Callable[[str], None]
) -> None:
    """SIGTERM (a node drains), then SIGKILL what is left after ``deadline_s``."""
    for process in processes:
        log(f"stopping pid {process.pid} (restarted by switchboard chaos)")
        with contextlib.suppress(psutil.Error):
            process.terminate()
    _, alive = psutil.wait_procs(processes, timeout=deadline_s)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(alive, timeout=10.0)


def _watch(cluster: Cluster, stop: threading.Event, log: Callable[[str], None]) -> None:
    """Wait for the stop signal; say once when a child exits on its own (a node may be
    killed on purpose in a failover demo: the rest keeps running)."""
    reported: set[int] = set()
    while not stop.wait(0.5):
        for child in cluster.children():
            code = child.poll()
            if code is not None and child.pid not in reported:
                reported.add(child.pid)
                log(f"{child.name} (pid {child.pid}) exited with code {code}")


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event, watching: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set ``stop`` while the cluster runs; during the start they abort
    it (its cleanup stops what had started); during the stop they are ignored, so a
    second Ctrl-C cannot leave half the cluster behind."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if watching.is_set():
            stop.set()
        elif not stop.is_set():
            stop.set()
            raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)

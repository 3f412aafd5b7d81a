"""What a local cluster is made of, decided before anything starts (pure, unit-tested).

``plan_cluster`` names the nodes, gives each a port and derives the load balancer from
them; ``ClusterState`` is the ``--state-file`` JSON that tools and tests read to find the
cluster (its URL, its Redis, every pid it started). The orchestration in ``run.py`` only
carries the plan out.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import msgspec

from switchboard.atomic_file import write_atomically
from switchboard.cluster.haproxy import CALL_PATH, WEBHOOK_PATH, LoadBalancer, Server
from switchboard.config import Profile

STATE_SCHEMA_VERSION = 1
NODE_HOST = "127.0.0.1"


class NodePlan(msgspec.Struct, frozen=True, kw_only=True):
    node_id: str
    port: int


class ClusterPlan(msgspec.Struct, frozen=True, kw_only=True):
    profile: Profile
    nodes: tuple[NodePlan, ...]
    load_balancer: LoadBalancer

    @property
    def url(self) -> str:
        """The WebSocket base URL Retell (or the simulator) is given; it appends the call id."""
        return f"ws://{_client_host(self.load_balancer.bind_host)}:{self.load_balancer.port}{CALL_PATH}"

    @property
    def webhook_url(self) -> str:
        lb = self.load_balancer
        return f"http://{_client_host(lb.bind_host)}:{lb.port}{WEBHOOK_PATH}"


def node_ids(count: int, prefix: str = "node") -> list[str]:
    """``node-1`` .. ``node-N``: distinct, stable names for the directory and the logs."""
    if count < 1:
        raise ValueError(f"a cluster needs at least one node, got {count}")
    return [f"{prefix}-{i}" for i in range(1, count + 1)]


def plan_cluster(
    *,
    nodes: int,
    port: int,
    node_ports: Sequence[int],
    profile: Profile = "distributed",
    bind_host: str = "127.0.0.1",
    longest_call_ms: int = 3_600_000,
) -> ClusterPlan:
    """``nodes`` nodes on ``node_ports`` (distinct, none of them ``port``) behind HAProxy on
    ``port``."""
    ids = node_ids(nodes)
    if len(node_ports) != nodes:
        raise ValueError(f"{nodes} nodes need {nodes} ports, got {len(node_ports)}")
    if len(set(node_ports)) != len(node_ports) or port in node_ports:
        raise ValueError(f"ports must be distinct: load balancer {port}, nodes {list(node_ports)}")
    plans = tuple(NodePlan(node_id=i, port=p) for i, p in zip(ids, node_ports, strict=True))
    lb = LoadBalancer(
        servers=tuple(Server(name=n.node_id, host=NODE_HOST, port=n.port) for n in plans),
        bind_host=bind_host,
        port=port,
        longest_call_ms=longest_call_ms,
        # A second cluster on the same port must fail to bind, not share it: with
        # SO_REUSEPORT the kernel would split new calls between two unrelated stacks.
        extra_global=("noreuseport",),
    )
    return ClusterPlan(profile=profile, nodes=plans, load_balancer=lb)


def node_argv(
    plan: ClusterPlan,
    node: NodePlan,
    *,
    redis_url: str | None,
    agent_file: Path | None = None,
    config: Path | None = None,
    bus_url: str | None = None,
) -> list[str]:
    """The ``switchboard serve`` arguments of one node (after the program itself)."""
    argv = ["serve", "--host", NODE_HOST, "--port", str(node.port)]
    argv += ["--node-id", node.node_id, "--profile", plan.profile]
    if redis_url is not None:
        argv += ["--redis-url", redis_url]
    if bus_url is not None:
        argv += ["--bus", bus_url]
    if agent_file is not None:
        argv += ["--agent-file", str(agent_file)]
    if config is not None:
        argv += ["--config", str(config)]
    return argv


class ProcessInfo(msgspec.Struct, kw_only=True):
    pid: int
    port: int | None = None


class NodeInfo(msgspec.Struct, kw_only=True):
    pid: int
    port: int
    node_id: str


class ClusterState(msgspec.Struct, kw_only=True):
    """The ``--state-file`` JSON. ``pids`` lists every process the cluster started."""

    schema_version: int = STATE_SCHEMA_VERSION
    url: str
    webhook_url: str
    redis_url: str | None
    profile: str
    nodes: list[NodeInfo]
    haproxy: ProcessInfo
    #: the private valkey-server, or ``None`` when ``--redis-url`` was given
    valkey: ProcessInfo | None = None
    #: the ``switchboard cluster`` process itself (send it SIGTERM to stop everything)
    cluster_pid: int = 0
    pids: list[int] = msgspec.field(default_factory=list)
    haproxy_cfg: str = ""
    log_dir: str = ""
    #: event-driven profile only: the bus, the archive, the analytics dashboard, and the
    #: pid of each service (``archive``, ``analytics``, ``escalation``) and of the broker
    bus_url: str | None = None
    archive_db: str | None = None
    dashboard_url: str | None = None
    services: dict[str, int] = msgspec.field(default_factory=dict)
    #: event-driven profile only: each service's ``/metrics`` URL
    service_metrics: dict[str, str] = msgspec.field(default_factory=dict)


def cluster_state(
    plan: ClusterPlan,
    *,
    node_pids: Sequence[int],
    haproxy_pid: int,
    valkey: ProcessInfo | None,
    redis_url: str | None,
    haproxy_cfg: Path,
    log_dir: Path,
    cluster_pid: int,
) -> ClusterState:
    nodes = [
        NodeInfo(pid=pid, port=n.port, node_id=n.node_id)
        for n, pid in zip(plan.nodes, node_pids, strict=True)
    ]
    pids = [*([valkey.pid] if valkey else []), *node_pids, haproxy_pid]
    return ClusterState(
        url=plan.url,
        webhook_url=plan.webhook_url,
        redis_url=redis_url,
        profile=plan.profile,
        nodes=nodes,
        haproxy=ProcessInfo(pid=haproxy_pid, port=plan.load_balancer.port),
        valkey=valkey,
        cluster_pid=cluster_pid,
        pids=pids,
        haproxy_cfg=str(haproxy_cfg),
        log_dir=str(log_dir),
    )


def write_state(state: ClusterState, path: Path) -> None:
    """Atomically: a reader polling for the file never sees half of it."""
    write_atomically(path, msgspec.json.format(msgspec.json.encode(state), indent=2))


def read_state(path: Path) -> ClusterState:
    return msgspec.json.decode(path.read_bytes(), type=ClusterState)


def _client_host(bind_host: str) -> str:
    """Where a local client connects when the load balancer binds ``bind_host``."""
    return "127.0.0.1" if bind_host in ("0.0.0.0", "", "*") else bind_host

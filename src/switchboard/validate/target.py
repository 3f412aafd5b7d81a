"""What ``switchboard validate`` points at: a URL, or a local cluster's state file.

The state file is the one ``switchboard cluster --state-file`` writes (docs/cluster.md);
only the fields a validation needs are read, so a newer file with more fields still reads.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import msgspec


class TargetError(ValueError):
    """A target that cannot be validated (bad URL, unreadable state file): exit 2."""


class StateNode(msgspec.Struct):
    pid: int
    port: int
    node_id: str


class ClusterFile(msgspec.Struct):
    url: str
    profile: str
    nodes: list[StateNode]
    #: event-driven clusters only: the archive's database and the services' pids
    archive_db: str | None = None
    services: dict[str, int] = msgspec.field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NodeStatus:
    node_id: str
    pid: int | None
    port: int
    ready: bool
    active_calls: int
    max_calls: int


@dataclass(frozen=True, slots=True)
class Target:
    """Where calls go, and (for a cluster) the nodes behind it."""

    url: str
    nodes: tuple[StateNode, ...] = ()
    cluster_profile: str | None = None
    archive_db: str | None = None
    #: service name -> pid (``archive``, ``analytics``, ``escalation``)
    services: tuple[tuple[str, int], ...] = ()

    @property
    def is_cluster(self) -> bool:
        return bool(self.nodes)

    @property
    def http_origin(self) -> str:
        parts = urlsplit(self.url)
        scheme = "https" if parts.scheme in ("wss", "https") else "http"
        return f"{scheme}://{parts.netloc}"


def url_target(url: str) -> Target:
    if not url.startswith(("ws://", "wss://")) or not urlsplit(url).netloc:
        raise TargetError(f"--url must be ws://HOST:PORT/llm-websocket or wss://..., got {url!r}")
    return Target(url=url.rstrip("/"))


def cluster_target(path: Path) -> Target:
    try:
        state = msgspec.json.decode(path.read_bytes(), type=ClusterFile)
    except OSError as exc:
        raise TargetError(f"cannot read cluster state {path}: {exc.strerror or exc}") from None
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise TargetError(f"{path} is not a cluster state file: {exc}") from None
    if not state.nodes:
        raise TargetError(f"{path} lists no nodes")
    return Target(
        url=state.url.rstrip("/"),
        nodes=tuple(state.nodes),
        cluster_profile=state.profile,
        archive_db=state.archive_db,
        services=tuple(sorted(state.services.items())),
    )


async def node_status(client: httpx.AsyncClient, node: StateNode) -> NodeStatus | None:
    """A node's ``/readyz`` (503 still carries the figures); ``None`` if it does not answer."""
    try:
        r = await client.get(f"http://127.0.0.1:{node.port}/readyz")
        body = r.json()
    except (httpx.HTTPError, ValueError):
        return None
    return NodeStatus(
        node_id=node.node_id,
        pid=node.pid,
        port=node.port,
        ready=bool(body.get("ready")),
        active_calls=int(body.get("active_calls", 0)),
        max_calls=int(body.get("max_calls", 0)),
    )


async def origin_status(client: httpx.AsyncClient, target: Target) -> dict[str, object] | None:
    try:
        r = await client.get(f"{target.http_origin}/readyz")
        body: dict[str, object] = r.json()
    except (httpx.HTTPError, ValueError):
        return None
    return body


def signal_node(node: StateNode, sig: signal.Signals) -> bool:
    """Signal one node of the cluster under validation; ``False`` if it is already gone."""
    try:
        os.kill(node.pid, sig)
    except ProcessLookupError:
        return False
    return True

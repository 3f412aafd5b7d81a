"""The one model of a deployment that every generated file is rendered from.

The durations nest, and only this module derives them, so no file can disagree with
another: the longest call < ``drain_timeout_s`` (a draining node lets every call end on
its own) < ``terminationGracePeriodSeconds`` (Kubernetes never kills a node mid-drain) <
HAProxy's ``timeout tunnel`` (the load balancer never cuts a call, draining or not).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from switchboard import __version__
from switchboard.blueprint.matrix import Decision

#: A draining node waits this much past the longest call before handing calls off.
DRAIN_MARGIN_S = 60
#: Kubernetes waits this much past the drain before it SIGKILLs the pod.
GRACE_MARGIN_S = 30
#: HAProxy keeps a tunnel this much past the longest call (its ``LoadBalancer`` default).
TUNNEL_MARGIN_S = 600
#: The pod's own pause before SIGTERM reaches the node, so endpoints drop it first.
PRESTOP_SLEEP_S = 5
SERVICES_ALWAYS = ("archive",)
PORT = 8080


@dataclass(frozen=True, slots=True)
class Autoscale:
    """Replicas follow active calls per pod, never CPU (a call is mostly idle CPU)."""

    min_replicas: int
    max_replicas: int
    #: average ``switchboard_active_calls`` per pod the autoscaler holds
    target_calls_per_pod: int


@dataclass(frozen=True, slots=True)
class Deployment:
    name: str
    namespace: str
    image: str
    profile: str
    #: target concurrent calls
    calls: int
    nodes: int
    #: ``max_calls`` per node: above it, handshakes get 503 (HAProxy retries elsewhere)
    max_calls: int
    budget_ms: float
    longest_call_s: int
    bus: str | None
    services: tuple[str, ...]
    cache: bool
    autoscale: Autoscale | None
    port: int = PORT

    def __post_init__(self) -> None:
        if not (self.longest_call_s < self.drain_timeout_s < self.grace_period_s):
            raise ValueError("durations must nest: longest call < drain < grace period")
        if self.tunnel_timeout_s <= self.drain_timeout_s:
            raise ValueError("HAProxy's tunnel timeout must outlast the drain")

    @property
    def shared_state(self) -> bool:
        return self.profile != "single"

    @property
    def drain_timeout_s(self) -> int:
        return self.longest_call_s + DRAIN_MARGIN_S

    @property
    def grace_period_s(self) -> int:
        return self.drain_timeout_s + PRESTOP_SLEEP_S + GRACE_MARGIN_S

    @property
    def tunnel_timeout_s(self) -> int:
        return self.longest_call_s + TUNNEL_MARGIN_S

    @property
    def state_ttl_s(self) -> int:
        """A call's state outlives the longest call (it is refreshed by every save too)."""
        return max(3600, self.drain_timeout_s)

    @property
    def node_ids(self) -> tuple[str, ...]:
        return tuple(f"node-{i}" for i in range(1, self.nodes + 1))

    @property
    def bus_url(self) -> str | None:
        if self.bus == "kafka":
            return "kafka://kafka:9092"
        if self.bus == "redis-streams":
            return "redis://redis:6379/1"
        return None


#: the tag ``make image`` builds from the Dockerfile; every generated file runs it
IMAGE = f"switchboard:{__version__}"


def build_deployment(
    decision: Decision,
    *,
    name: str = "switchboard",
    namespace: str = "switchboard",
    image: str = IMAGE,
    longest_call_s: int = 3600,
    bus: str = "kafka",
) -> Deployment:
    """The deployment a decision describes."""
    if longest_call_s < 1:
        raise ValueError(f"the longest call must be at least 1 s, got {longest_call_s}")
    if bus not in ("kafka", "redis-streams"):
        raise ValueError(f"bus must be kafka or redis-streams, got {bus!r}")
    d = decision
    events = d.profile == "event-driven"
    services: tuple[str, ...] = ()
    if events:
        services = SERVICES_ALWAYS + tuple(
            s
            for s, on in (("analytics", d.inputs.analytics), ("escalation", d.inputs.escalation))
            if on
        )
    per_node = d.capacity.calls_per_node
    autoscale = None
    if events:
        target = max(1, math.floor(per_node * (d.nodes - 1) / d.nodes))
        autoscale = Autoscale(
            min_replicas=d.nodes,
            max_replicas=max(d.nodes + 1, math.ceil(2 * d.inputs.calls / target) + 1),
            target_calls_per_pod=target,
        )
    return Deployment(
        name=name,
        namespace=namespace,
        image=image,
        profile=d.profile,
        calls=d.inputs.calls,
        nodes=d.nodes,
        max_calls=per_node,
        budget_ms=d.budget_ms,
        longest_call_s=longest_call_s,
        bus=bus if events else None,
        services=services,
        cache=d.cache,
        autoscale=autoscale,
    )

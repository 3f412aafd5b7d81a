"""Which faults happen when, decided from a seed before anything runs (pure).

A fault spec is a comma-separated list of ``kind[:param]`` tokens, one fault each:
``kill,term,redis-restart,redis-pause:2,hangup:5,haproxy-restart,bus-stop:3,service-kill``,
and the event pipeline's ``archive-stop:N,poison,oversized,kill-while-spilling:N``.
The schedule spreads them over the run: the run's middle 70 % is cut into one slot per
fault, each fault lands at a seeded instant of its slot, and the order of the faults is
shuffled by the seed. The same seed, spec, duration and cluster give the same schedule,
so a failing run can be replayed.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Literal, get_args

import msgspec

FaultKind = Literal[
    "kill",
    "kill-mid-turn",
    "kill-after-reply",
    "term",
    "redis-restart",
    "redis-pause",
    "hangup",
    "haproxy-restart",
    "bus-stop",
    "service-kill",
    "archive-stop",
    "poison",
    "oversized",
    "kill-while-spilling",
]
FAULT_KINDS: tuple[FaultKind, ...] = get_args(FaultKind)
#: Faults that need the event-driven profile's bus or services.
EVENT_DRIVEN_ONLY: frozenset[str] = frozenset(
    {"bus-stop", "service-kill", "archive-stop", "poison", "oversized", "kill-while-spilling"}
)
#: Faults aimed at the event pipeline: a run with any of them also judges the archive,
#: the escalations and the dead letters (``chaos/event_checker.py``). Not in the default
#: spec: asked for by name.
EVENT_PIPELINE: frozenset[str] = frozenset(
    {"archive-stop", "poison", "oversized", "kill-while-spilling"}
)
#: The default parameter of each kind that takes one: seconds paused or stopped, calls
#: hung up.
DEFAULT_PARAM: dict[str, float] = {
    "redis-pause": 2.0,
    "hangup": 3.0,
    "bus-stop": 3.0,
    "archive-stop": 5.0,
    "kill-while-spilling": 3.0,
}
#: The share of the run before the first slot and after the last one: calls are placed
#: before the first fault and have time to recover after the last.
LEAD_IN = 0.1
SPAN = 0.7


class ScheduleError(ValueError):
    """A fault spec that cannot be run against this cluster."""


class FaultRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One token of the spec."""

    kind: FaultKind
    param: float | None = None


class ScheduledFault(msgspec.Struct, frozen=True, kw_only=True):
    """One fault of the schedule: when (seconds from the chaos run's start), what, on what."""

    at_s: float
    kind: FaultKind
    #: a node id, a service name, ``redis``, ``haproxy``, ``bus``, or ``calls``
    target: str
    param: float | None = None


def parse_spec(spec: str) -> list[FaultRequest]:
    """``kind[:param],...`` -> requests; ``ScheduleError`` names the first bad token."""
    requests: list[FaultRequest] = []
    for raw in spec.split(","):
        token = raw.strip()
        if not token:
            continue
        name, _, value = token.partition(":")
        if name not in FAULT_KINDS:
            raise ScheduleError(f"unknown fault {name!r}; known faults: {', '.join(FAULT_KINDS)}")
        param: float | None = DEFAULT_PARAM.get(name)
        if value:
            if name not in DEFAULT_PARAM:
                raise ScheduleError(f"fault {name!r} takes no parameter, got {token!r}")
            try:
                param = float(value)
            except ValueError:
                raise ScheduleError(f"fault {token!r}: {value!r} is not a number") from None
            if not 0 < param <= 3600:
                raise ScheduleError(f"fault {token!r}: the parameter must be in (0, 3600]")
        requests.append(FaultRequest(kind=name, param=param))
    if not requests:
        raise ScheduleError("the fault spec names no fault")
    return requests


def default_spec(profile: str, bus_is_broker: bool) -> str:
    """One fault of each kind that applies to ``profile`` (``bus_is_broker``: the
    cluster runs a bus the nemesis can stop). The event pipeline's faults are asked for by
    name: they judge the archive too, which a plain SIGKILL of a node with the bus up may
    leave a few milliseconds of events short (docs/outbox.md)."""
    kinds = [k for k in FAULT_KINDS if k not in EVENT_DRIVEN_ONLY]
    if profile == "event-driven":
        kinds.append("service-kill")
        if bus_is_broker:
            kinds.append("bus-stop")
    return ",".join(kinds)


def plan_schedule(
    requests: Sequence[FaultRequest],
    *,
    seed: int,
    duration_s: float,
    nodes: Sequence[str],
    services: Sequence[str] = (),
    has_redis: bool = True,
    has_broker: bool = False,
    has_bus: bool | None = None,
) -> list[ScheduledFault]:
    """The seeded schedule, sorted by time. ``ScheduleError`` if a fault has no target
    here (no private Redis to restart, no broker to stop, no service to kill).

    ``has_broker``: the cluster runs its own Kafka broker; ``has_bus``: it runs a bus the
    nemesis can stop, its broker or (``--bus redis``) its own valkey-server (default:
    ``has_broker``)."""
    if duration_s <= 0:
        raise ScheduleError("the duration must be positive")
    if not nodes:
        raise ScheduleError("the cluster lists no node")
    rng = random.Random(seed)
    order = list(requests)
    rng.shuffle(order)
    slot = SPAN * duration_s / len(order)
    schedule = []
    for i, request in enumerate(order):
        at = duration_s * LEAD_IN + slot * (i + rng.random())
        target = _target(
            request.kind,
            rng,
            nodes,
            services,
            has_redis,
            has_broker,
            has_broker if has_bus is None else has_bus,
        )
        schedule.append(
            ScheduledFault(at_s=round(at, 3), kind=request.kind, target=target, param=request.param)
        )
    return sorted(schedule, key=lambda f: f.at_s)


def _target(
    kind: FaultKind,
    rng: random.Random,
    nodes: Sequence[str],
    services: Sequence[str],
    has_redis: bool,
    has_broker: bool,
    has_bus: bool,
) -> str:
    event_driven = any(s != "tansu" for s in services)
    if kind in EVENT_PIPELINE and not event_driven:
        raise ScheduleError(f"fault {kind!r} needs an event-driven cluster's services")
    if kind in ("kill", "kill-mid-turn", "kill-after-reply", "term"):
        return rng.choice(list(nodes))
    if kind == "kill-while-spilling":
        if not has_bus:
            raise ScheduleError(
                "fault 'kill-while-spilling' needs a bus the nemesis can stop (the cluster's "
                "own broker or valkey-server)"
            )
        return rng.choice(list(nodes))
    if kind == "archive-stop":
        if "archive" not in services:
            raise ScheduleError("fault 'archive-stop' needs the cluster's archive service")
        return "archive"
    if kind == "poison":
        return "bus"
    if kind == "oversized":
        return "calls"
    if kind in ("redis-restart", "redis-pause"):
        if not has_redis:
            raise ScheduleError(
                f"fault {kind!r} needs the cluster's own Redis (the state file has no valkey pid)"
            )
        return "redis"
    if kind == "haproxy-restart":
        return "haproxy"
    if kind == "hangup":
        return "calls"
    if kind == "bus-stop":
        if not has_bus:
            raise ScheduleError(
                "fault 'bus-stop' needs an event-driven cluster with its own broker (--bus kafka)"
                " or, with --bus redis, its own valkey-server"
            )
        return "bus"
    apps = [s for s in services if s != "tansu"]
    if not apps:
        raise ScheduleError("fault 'service-kill' needs an event-driven cluster's services")
    return rng.choice(sorted(apps))

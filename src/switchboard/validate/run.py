"""``switchboard validate``: prove a running deployment keeps its profile's promises.

The checks run one after another, each on its own traffic, from the least to the most
disruptive: the load at the target concurrency (latency, no drops, protocol), the call cap
(held to it, refused past it), a caller's reconnect, cached answers within budget (when
the cache is on), the archive and the escalation (event-driven clusters), then, on a
local cluster, a node killed and a node drained while calls run. Killing and draining
need the cluster's pids, so against a bare URL they are listed as not run.

The latency check carries the load's per-turn breakdown by the server's own clock (its
``/metrics`` histograms before and after the load, as ``switchboard simulate`` reports
it): time to the first chunk and the save before ``content_complete`` in the node, and
what lies outside it (network, load balancer, queueing).
"""

from __future__ import annotations

import asyncio
import signal
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import psutil
from websockets.exceptions import WebSocketException

from switchboard.config import BUDGET_MS
from switchboard.sim.options import SimOptions
from switchboard.sim.results import RunReport
from switchboard.sim.runner import Simulation
from switchboard.sim.server_metrics import (
    Buckets,
    breakdown_figures,
    merge_buckets,
    segment_buckets,
    turn_breakdown,
)
from switchboard.validate.cache import NAME as CACHE_CHECK
from switchboard.validate.cache import cache_check, metrics_urls
from switchboard.validate.events import (
    ARCHIVE,
    ESCALATION,
    archive_check,
    escalation_check,
    escalation_plan,
    service_rules,
)
from switchboard.validate.probes import (
    ProbeError,
    hold_to_capacity,
    reconnect_once,
)
from switchboard.validate.report import Check, ValidationReport
from switchboard.validate.target import (
    NodeStatus,
    StateNode,
    Target,
    node_status,
    origin_status,
    signal_node,
)

#: The most calls the capacity check will hold open itself.
MAX_CAPACITY_PROBE = 2000
#: Seconds to wait for a node to take calls before it is killed or drained.
BUSY_DEADLINE_S = 30.0


@dataclass(frozen=True, slots=True)
class ValidateOptions:
    profile: str
    calls: int = 10
    budget_ms: float | None = None
    #: concurrent calls the deployment admits in total (default: read from ``/readyz``)
    capacity: int | None = None
    duration_s: float = 10.0
    turns: int = 4
    think_ms: float = 200.0
    seed: int = 1
    #: fail the slow-LLM check when the nodes expose no cache (instead of "not applicable")
    require_cache: bool = False
    #: the caller line the event-driven escalation check asks (default: from the rules)
    escalation_line: str | None = None

    def __post_init__(self) -> None:
        if self.profile not in BUDGET_MS:
            raise ValueError(
                f"unknown profile {self.profile!r}; expected one of {', '.join(BUDGET_MS)}"
            )
        if self.calls < 1:
            raise ValueError(f"--calls must be at least 1, got {self.calls}")
        if self.budget_ms is not None and self.budget_ms <= 0:
            raise ValueError(f"--budget-ms must be positive, got {self.budget_ms:g}")
        if self.capacity is not None and self.capacity < 1:
            raise ValueError(f"--capacity must be at least 1, got {self.capacity}")
        if self.duration_s <= 0:
            raise ValueError(f"--duration must be positive, got {self.duration_s:g}")

    @property
    def budget(self) -> float:
        return self.budget_ms if self.budget_ms is not None else float(BUDGET_MS[self.profile])


def _sim(target: Target, o: ValidateOptions, label: str, calls: int, turns: int) -> Simulation:
    return Simulation(
        SimOptions(
            url=target.url,
            calls=calls,
            turns=turns,
            think_ms=o.think_ms,
            ramp_ms=min(2000.0, 20.0 * calls),
            duration_s=o.duration_s,
            budget_ms=o.budget,
            seed=o.seed,
            label=label,
        )
    )


def _response_ttfb(report: RunReport) -> tuple[float, float, int]:
    """Response turns' TTFB p50 and p99 (ms) and their count."""
    for k in report.per_kind:
        if k.kind == "response":
            return k.ttfb.p50_ms, k.ttfb.p99_ms, k.turns
    return 0.0, 0.0, 0


def server_segments(target: Target) -> Buckets:
    """The nodes' turn-segment histograms now, summed over the nodes whose ``/metrics``
    the validator reads (``{}`` where none is readable)."""
    return merge_buckets(segment_buckets(url) for url in metrics_urls(target))


def load_checks(
    report: RunReport, o: ValidateOptions, timings: dict[str, float] | None = None
) -> list[Check]:
    """The checks judged on the load run; ``timings`` is its server-side breakdown
    (``turn_breakdown``), shown beside the latency it explains."""
    p50, p99, turns = _response_ttfb(report)
    failed = sum(report.calls_failed.values())
    violations = sum(report.violations.values())
    figures: dict[str, str | int | float] = {
        "TTFB p99 (ms)": round(p99, 2),
        "budget (ms)": o.budget,
        "response turns": turns,
        "concurrent calls": o.calls,
    }
    if timings:
        figures["TTFB p50 (ms)"] = round(p50, 2)
        figures.update(breakdown_figures(timings, p50))
    return [
        Check(
            name="latency",
            claim=f"TTFB p99 of response turns within {o.budget:g} ms at {o.calls} calls",
            passed=turns > 0 and p99 <= o.budget,
            figures=figures,
            detail="" if turns else "no response turn was answered",
        ),
        Check(
            name="no drops under load",
            claim=f"0 failed calls at the target concurrency ({o.calls})",
            passed=failed == 0 and report.calls_started > 0,
            figures={
                "calls started": report.calls_started,
                "calls failed": failed,
                **{f"failed: {k}": v for k, v in sorted(report.calls_failed.items())},
            },
        ),
        Check(
            name="protocol conformance",
            claim="no protocol violation as Retell would see it",
            passed=violations == 0,
            figures={
                "frames received": report.frames_received,
                "violations": violations,
                **{f"violation: {k}": v for k, v in sorted(report.violations.items())},
            },
            detail="; ".join(v.detail for v in report.violation_samples[:3]),
        ),
    ]


async def _capacity(target: Target, o: ValidateOptions, client: httpx.AsyncClient) -> int | None:
    if o.capacity is not None:
        return o.capacity
    if target.is_cluster:
        statuses = await asyncio.gather(*(node_status(client, n) for n in target.nodes))
        return sum(s.max_calls for s in statuses if s is not None) or None
    body = await origin_status(client, target)
    value = body.get("max_calls") if body else None
    return value if isinstance(value, int) else None


async def capacity_check(target: Target, o: ValidateOptions, cap: int) -> Check:
    result = await hold_to_capacity(target.url, cap)
    return Check(
        name="calls past the cap",
        claim=f"{cap} calls held without a drop, the next ones refused with a clean 503",
        passed=not result.error and result.alive == cap and result.refused_status == 503,
        figures={
            "cap": cap,
            "calls held": result.held,
            "held calls alive afterwards": result.alive,
            "status past the cap": result.refused_status or "none",
        },
        detail=result.error,
    )


async def reconnect_check(target: Target) -> Check:
    try:
        r = await reconnect_once(target.url)
    except (OSError, ProbeError, TimeoutError, WebSocketException) as exc:
        return Check(
            name="reconnect",
            claim="a lost socket reconnects to the same call without a second greeting",
            passed=False,
            detail=f"the probe failed: {exc!r}",
        )
    return Check(
        name="reconnect",
        claim="a lost socket reconnects to the same call without a second greeting",
        passed=bool(r.first_greeting) and r.resumed_greeting == "" and bool(r.answer_after),
        figures={
            "first greeting": r.first_greeting[:60],
            "greeting after reconnect": r.resumed_greeting[:60] or "(empty)",
            "answered after reconnect": "yes" if r.answer_after else "no",
        },
    )


async def _busiest(
    client: httpx.AsyncClient, nodes: list[StateNode], sim: Simulation, calls: int
) -> NodeStatus | None:
    """The node holding the most calls, once every call has had a turn answered: a node
    taken down mid-handshake would test connect retries, not a live call's resumption."""
    deadline = time.monotonic() + BUSY_DEADLINE_S
    while time.monotonic() < deadline:
        if sim.metrics.turns < 2 * calls:
            await asyncio.sleep(0.05)
            continue
        statuses = [s for s in await asyncio.gather(*(node_status(client, n) for n in nodes)) if s]
        busy = [s for s in statuses if s.active_calls > 0]
        if busy:
            return max(busy, key=lambda s: s.active_calls)
        await asyncio.sleep(0.05)
    return None


def _gone(pid: int | None) -> bool:
    if pid is None:
        return True
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def disruption_check(
    target: Target,
    o: ValidateOptions,
    client: httpx.AsyncClient,
    alive: list[StateNode],
    sig: signal.Signals,
) -> tuple[Check, StateNode | None]:
    """Calls running, the busiest node signalled: every call goes on (resumed elsewhere)."""
    kill = sig == signal.SIGKILL
    name = "node restart: state survives" if kill else "drain"
    claim = (
        "a node killed mid-call: its calls reconnect and resume on another node"
        if kill
        else "a node SIGTERMed: its calls finish or hand off with 1006 and resume"
    )
    calls = max(2, min(o.calls, 4 * len(alive)))
    sim = _sim(target, o, name, calls=calls, turns=50)
    task = asyncio.create_task(sim.run())
    victim: StateNode | None = None
    try:
        busiest = await _busiest(client, alive, sim, calls)
        if busiest is not None:
            victim = next(n for n in alive if n.node_id == busiest.node_id)
            signal_node(victim, sig)
    finally:
        report = await task
    failed = sum(report.calls_failed.values())
    violations = sum(report.violations.values())
    figures: dict[str, str | int | float] = {
        "node": victim.node_id if victim else "none took calls",
        "signal": sig.name,
        "calls started": report.calls_started,
        "reconnects": report.reconnects,
        "calls failed": failed,
        "violations": violations,
        **{f"violation: {k}": v for k, v in sorted(report.violations.items())},
    }
    passed = victim is not None and failed == 0 and violations == 0
    if kill:
        passed = passed and report.reconnects > 0
    else:
        figures["node exited"] = "yes" if victim and _gone(victim.pid) else "not yet"
    return Check(name=name, claim=claim, passed=passed, figures=figures), victim


async def _event_checks(target: Target, o: ValidateOptions, report: ValidationReport) -> None:
    """Before the disruptive checks: a killed node's calls would blur the archive's count."""
    if target.archive_db is None:
        why = "needs --cluster with an event-driven state file (its archive_db)"
        report.not_run[ARCHIVE] = why
        report.not_run[ESCALATION] = why
        return
    report.checks.append(
        await archive_check(target.url, target.archive_db, calls=o.calls, turns=o.turns)
    )
    pid = dict(target.services).get("escalation")
    if pid is None:
        report.not_run[ESCALATION] = "the cluster runs no escalation service"
        return
    plan = escalation_plan(service_rules(pid), o.escalation_line)
    if isinstance(plan, str):
        report.not_run[ESCALATION] = plan
        return
    line, asks = plan
    report.checks.append(await escalation_check(target.url, target.archive_db, line, asks))


async def validate(target: Target, o: ValidateOptions) -> ValidationReport:
    started = time.monotonic()
    report = ValidationReport(
        target=target.url,
        profile=o.profile,
        budget_ms=o.budget,
        calls=o.calls,
        started_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    before = await asyncio.to_thread(server_segments, target)
    load = await _sim(target, o, "load", calls=o.calls, turns=o.turns).run()
    after = await asyncio.to_thread(server_segments, target)
    report.checks += load_checks(load, o, turn_breakdown(before, after))
    async with httpx.AsyncClient(timeout=5.0, trust_env=False) as client:
        cap = await _capacity(target, o, client)
        if cap is None:
            report.not_run["calls past the cap"] = "the cap is unknown: pass --capacity"
        elif cap > MAX_CAPACITY_PROBE:
            report.not_run["calls past the cap"] = f"cap {cap} > {MAX_CAPACITY_PROBE} sockets"
        else:
            report.checks.append(await capacity_check(target, o, cap))
        report.checks.append(await reconnect_check(target))
        cached = await cache_check(target, o.budget, o.require_cache)
        if isinstance(cached, str):
            report.not_run[CACHE_CHECK] = cached
        else:
            report.checks.append(cached)
        if o.profile == "event-driven":
            await _event_checks(target, o, report)
        shared = o.profile != "single"
        if not target.is_cluster:
            why = "needs --cluster (the validator must be able to signal a node)"
            report.not_run["node restart: state survives"] = why
            report.not_run["drain"] = why
        elif not shared or len(target.nodes) < 2:
            why = "the single profile keeps calls in one process: losing it loses them"
            report.not_run["node restart: state survives"] = why
            report.not_run["drain"] = why
        else:
            alive = list(target.nodes)
            check, victim = await disruption_check(target, o, client, alive, signal.SIGKILL)
            report.checks.append(check)
            alive = [n for n in alive if n != victim]
            if len(alive) >= 2:
                check, _ = await disruption_check(target, o, client, alive, signal.SIGTERM)
                report.checks.append(check)
            else:
                report.not_run["drain"] = "fewer than two nodes left after the kill"
    report.duration_s = round(time.monotonic() - started, 2)
    return report


def run_validation(target: Target, o: ValidateOptions) -> ValidationReport:
    return asyncio.run(validate(target, o))

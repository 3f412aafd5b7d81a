"""Failover under load: kill the node that holds the most calls, then judge the recovery.

Used by ``switchboard demo --profile distributed``, the failover bench row and the
cluster tests. The decisions are pure (``busiest``, ``summarize``; the verdict is in
``verdict.py``);
only ``node_loads`` and ``kill_node`` touch the running cluster. Times are wall-clock
Unix seconds on both sides: the simulator reports when each socket was lost and when the
first turn after its reconnect was answered, and the killer records when it killed, so
kill -> first answered turn needs no shared clock beyond the machine's.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence

import httpx
from prometheus_client.parser import text_string_to_metric_families

from switchboard.cluster.plan import ClusterState, NodeInfo
from switchboard.cluster.processes import POLL_INTERVAL_S
from switchboard.sim.metrics import Histogram
from switchboard.sim.results import FailoverSummary, ReconnectEvent


def node_loads(state: ClusterState, timeout_s: float = 2.0) -> dict[str, int]:
    """``active_calls`` of every node that answers ``/readyz`` (a draining or full node
    answers 503 with the same body); nodes that do not answer are left out."""
    loads: dict[str, int] = {}
    with httpx.Client(timeout=timeout_s, trust_env=False) as client:
        for node in state.nodes:
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError, TypeError):
                body = client.get(f"http://127.0.0.1:{node.port}/readyz").json()
                loads[node.node_id] = int(body["active_calls"])
    return loads


def answered_turns(state: ClusterState, timeout_s: float = 2.0) -> int:
    """Turns (greetings aside) the live nodes have completed, from their ``/metrics``."""
    total = 0.0
    with httpx.Client(timeout=timeout_s, trust_env=False) as client:
        for node in state.nodes:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                text = client.get(f"http://127.0.0.1:{node.port}/metrics").text
                for family in text_string_to_metric_families(text):
                    for sample in family.samples:
                        if (
                            sample.name == "switchboard_turn_seconds_count"
                            and sample.labels.get("kind") != "greeting"
                        ):
                            total += sample.value
    return int(total)


def kill_busiest_mid_run(
    state: ClusterState,
    *,
    turns_first: int,
    running: Callable[[], bool],
    deadline_s: float = 30.0,
) -> FailoverSummary | None:
    """Once the cluster has answered ``turns_first`` turns (so calls are mid-conversation,
    with state worth keeping), or at the deadline, ``kill -9`` the node holding the most
    calls. ``None`` if the run ended first."""
    deadline = time.monotonic() + deadline_s
    loads: dict[str, int] = {}
    while running():
        loads = node_loads(state)
        if answered_turns(state) >= turns_first or time.monotonic() > deadline:
            break
        time.sleep(POLL_INTERVAL_S)
    victim = busiest(loads)
    if victim is None or not running():
        return None
    _, killed_at = kill_node(state, victim)
    return FailoverSummary(
        killed_node=victim, killed_at=killed_at, calls_on_killed_node=loads[victim]
    )


def busiest(loads: Mapping[str, int]) -> str | None:
    """The node holding the most calls (ties: the first name in order); ``None`` if none."""
    if not loads:
        return None
    return min(loads, key=lambda node: (-loads[node], node))


def kill_node(state: ClusterState, node_id: str) -> tuple[NodeInfo, float]:
    """``kill -9`` the node (no drain, no close frames: its callers see 1006); returns the
    node and the wall-clock time of the kill."""
    node = next(n for n in state.nodes if n.node_id == node_id)
    killed_at = time.time()
    os.kill(node.pid, signal.SIGKILL)
    return node, killed_at


def summarize(
    events: Sequence[ReconnectEvent], *, killed_node: str, killed_at: float, calls_on_node: int
) -> FailoverSummary:
    """The sockets lost after ``killed_at`` and how their calls recovered."""
    after = [e for e in events if e.lost_at >= killed_at]
    calls = {e.call_id for e in after}
    resumed = {e.call_id for e in after if e.answered_at is not None and e.begin_empty is not False}
    hist = Histogram()
    for e in after:
        if e.answered_at is not None:
            hist.record(e.answered_at - killed_at)
    return FailoverSummary(
        killed_node=killed_node,
        killed_at=killed_at,
        calls_on_killed_node=calls_on_node,
        sockets_lost=len(after),
        calls_lost_socket=len(calls),
        calls_resumed=len(resumed),
        kill_to_answer=hist.summary(),
    )

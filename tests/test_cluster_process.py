"""``switchboard cluster`` as a real process tree: valkey-server, two nodes and HAProxy.

The profile is ``single`` here (but for the event-driven test at the end, which adds the
bus and the services), so this module needs little from the shared store: it proves the
orchestration (state file, balancing, webhooks through the load balancer,
drain and stop without orphans). The failover under load is in test_cluster_failover.py.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from switchboard.cluster.launch import start_cluster_child
from switchboard.cluster.processes import ChildError
from switchboard.services.archive import open_archive
from switchboard.services.archive import queries as q
from switchboard.services.archive.store import ArchiveDb
from switchboard.sim.runner import simulate
from tests.fixtures.broken_servers import fast_options
from tests.fixtures.cluster import CLUSTER_ENV, gone, running_cluster, stop_cluster
from tests.fixtures.server import RetellPeer
from tests.test_demo_failover import processes_using

pytestmark = pytest.mark.system


async def active_calls(http: httpx.AsyncClient, port: int) -> int:
    body = (await http.get(f"http://127.0.0.1:{port}/readyz")).json()
    return int(body["active_calls"])


def servers_in(haproxy_cfg: Path) -> int:
    return haproxy_cfg.read_text().count("server node-")


async def _draining(http: httpx.AsyncClient, url: str) -> bool:
    response = await http.get(url)
    return response.status_code == 503 and bool(response.json()["draining"])


async def eventually_async(condition: Callable[[], Awaitable[bool]], timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not await condition():
            await asyncio.sleep(0.02)


async def test_cluster_balances_calls_and_webhooks_and_sigterm_leaves_no_process(
    tmp_path: Path,
) -> None:
    with running_cluster(tmp_path, nodes=2, profile="single", SWITCHBOARD_CALL_DETAILS="false") as (
        child,
        state,
    ):
        assert state.url == f"ws://127.0.0.1:{state.haproxy.port}/llm-websocket"
        assert state.redis_url is not None
        assert state.redis_url.startswith("redis://127.0.0.1:")
        assert [n.node_id for n in state.nodes] == ["node-1", "node-2"]
        assert len({n.port for n in state.nodes} | {state.haproxy.port}) == 3
        assert state.valkey is not None
        assert set(state.pids) == {
            state.valkey.pid,
            state.haproxy.pid,
            *(n.pid for n in state.nodes),
        }
        assert state.cluster_pid == child.pid
        assert all(not gone(pid) for pid in state.pids)
        assert servers_in(Path(state.haproxy_cfg)) == 4

        # leastconn: four calls held open one after the other land two on each node.
        async with httpx.AsyncClient(trust_env=False) as http:
            sockets = []
            try:
                for i in range(4):
                    ws = await connect(f"{state.url}/held-{i}", proxy=None)
                    sockets.append(ws)
                    await RetellPeer(ws).complete(0)  # config, call details, greeting
                loads = [await active_calls(http, n.port) for n in state.nodes]
                assert loads == [2, 2]
            finally:
                for ws in sockets:
                    await ws.close()

            # /webhook is routed to a node (HAProxy's own errors are HTML 503s).
            response = await http.post(state.webhook_url, content=b"{}")
            assert response.status_code == 401
            assert response.text == "unauthorized"

        report = await simulate(fast_options(state.url, calls=6, turns=2))
        assert report.calls_failed == {}
        assert report.violations == {}
        assert report.calls_completed == 6

        code = stop_cluster(child)
        assert code == 0
        assert all(gone(pid) for pid in state.pids)
        state_file = tmp_path / "cluster.json"
        assert not state_file.exists()  # removed on stop: nothing claims to run


async def test_a_draining_node_gets_no_new_call_and_keeps_its_own(
    tmp_path: Path, redis_server_url: str
) -> None:
    """One node drains (SIGTERM to it alone): its live call goes on, and every new call
    lands on the other node at once, before any health check has noticed, because the
    draining node refuses the handshake with 503 and HAProxy retries elsewhere."""
    with running_cluster(
        tmp_path,
        nodes=2,
        profile="single",
        redis_url=redis_server_url,
        SWITCHBOARD_DRAIN_TIMEOUT_S="60",
        SWITCHBOARD_CALL_DETAILS="false",
    ) as (_, state):
        assert state.valkey is None  # --redis-url: no private Redis started
        assert state.redis_url == redis_server_url
        assert len(state.pids) == 3
        first, second = state.nodes
        async with httpx.AsyncClient(trust_env=False) as http:
            held = [await connect(f"{state.url}/held-{i}", proxy=None) for i in range(2)]
            try:
                for ws in held:
                    await RetellPeer(ws).complete(0)
                assert [await active_calls(http, n.port) for n in state.nodes] == [1, 1]
                os.kill(first.pid, signal.SIGTERM)
                await eventually_async(
                    lambda: _draining(http, f"http://127.0.0.1:{first.port}/readyz")
                )
                fresh = []
                for i in range(4):
                    ws = await connect(f"{state.url}/new-{i}", proxy=None)
                    fresh.append(ws)
                    await RetellPeer(ws).complete(0)
                assert await active_calls(http, second.port) == 5
                assert await active_calls(http, first.port) == 1
                for ws in held:  # the draining node's call is still answered
                    peer = RetellPeer(ws)
                    await peer.request(1, "What are your opening hours?")
                    await peer.complete(1)
                for ws in fresh:
                    await ws.close()
            finally:
                for ws in held:
                    await ws.close()


async def test_sigterm_drains_a_live_call_before_stopping(tmp_path: Path) -> None:
    """A call in progress when the cluster stops is dropped only after the drain timeout,
    without a close frame (so Retell would reconnect it elsewhere), never cut at once."""
    with running_cluster(
        tmp_path,
        nodes=1,
        profile="single",
        SWITCHBOARD_DRAIN_TIMEOUT_S="5",  # room for the request below on a busy machine
        SWITCHBOARD_CALL_DETAILS="false",
    ) as (child, state):
        node = state.nodes[0]
        async with connect(f"{state.url}/draining", proxy=None) as ws:
            peer = RetellPeer(ws)
            await peer.complete(0)
            loop = asyncio.get_running_loop()
            stopping = loop.run_in_executor(None, stop_cluster, child)
            async with httpx.AsyncClient(trust_env=False) as http:
                ready = f"http://127.0.0.1:{node.port}/readyz"
                await eventually_async(lambda: _draining(http, ready))
            # Draining, and the call still gets answers.
            await peer.request(1, "What are your opening hours?")
            await peer.complete(1)
            # Then it ends without a close frame: Retell would reconnect it elsewhere.
            await asyncio.wait_for(ws.wait_closed(), 60)
            assert ws.protocol.close_rcvd is None
            assert await stopping == 0
        assert all(gone(pid) for pid in state.pids)


@pytest.mark.parametrize("bus", ["kafka", "redis"])
async def test_event_driven_cluster_runs_bus_and_services_and_archives_every_turn(
    tmp_path: Path, bus: str
) -> None:
    """``--profile event-driven``: the bus (a tansu broker, or Streams on the cluster's
    valkey) and the three services come up with the nodes, every turn is archived and
    counted, and one SIGTERM stops all of it."""
    with running_cluster(
        tmp_path,
        nodes=2,
        profile="event-driven",
        extra_args=["--bus", bus],
        SWITCHBOARD_CALL_DETAILS="false",
    ) as (child, state):
        assert state.profile == "event-driven"
        assert set(state.services) == {"archive", "analytics", "escalation"} | (
            {"tansu"} if bus == "kafka" else set()
        )
        assert state.valkey is not None
        if bus == "kafka":
            assert state.bus_url is not None
            assert state.bus_url.startswith("kafka://127.0.0.1:")
        else:
            assert state.bus_url == state.redis_url
        assert set(state.pids) == {
            state.valkey.pid,
            state.haproxy.pid,
            *(n.pid for n in state.nodes),
            *state.services.values(),
        }
        assert all(not gone(pid) for pid in state.pids)
        assert state.archive_db is not None
        assert state.dashboard_url is not None

        report = await simulate(fast_options(state.url, calls=6, turns=3))
        assert report.calls_failed == {}
        assert report.turns >= 18
        async with httpx.AsyncClient(trust_env=False) as http:

            async def counted() -> bool:
                summary = (await http.get(f"{state.dashboard_url}api/summary")).json()
                return int(summary["totals"]["turns"]) >= report.turns

            await eventually_async(counted, timeout=60)
            dashboard = await http.get(str(state.dashboard_url))
            assert dashboard.status_code == 200
        archive = await open_archive(state.archive_db)
        try:
            await eventually_async(lambda: _archived_at_least(archive, report.turns), timeout=60)
            assert (await q.stats(archive)).turns == report.turns
        finally:
            await archive.close()

        code = stop_cluster(child)
        assert code == 0
        assert all(gone(pid) for pid in state.pids)


async def _archived_at_least(archive: ArchiveDb, turns: int) -> bool:
    return (await q.stats(archive)).turns >= turns


def test_event_driven_cluster_with_bad_escalation_rules_says_so_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {name: x, when: asks_for_human, action: transfer}\n")
    with pytest.raises(ChildError, match="transfers but names no number"):
        start_cluster_child(
            nodes=1,
            log_dir=tmp_path / "logs",
            profile="event-driven",
            env=CLUSTER_ENV,
            extra_args=["--escalation-rules", str(rules)],
        )
    assert processes_using(tmp_path) == []

"""SUMMARY.md's migration path, single -> distributed, run with real processes and calls in
flight: start the new nodes beside the old one, move the load balancer (a HAProxy reload
with ``-sf``, as production reloads it), drain the old node with one SIGTERM. No call is
dropped, none is greeted twice, new calls land on the new nodes, and ``switchboard
validate`` passes on the deployment after the move.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from switchboard.cluster.haproxy import LoadBalancer, Server, start_haproxy
from switchboard.cluster.processes import SWITCHBOARD_ARGV, Child, wait_http_ready
from switchboard.cluster.valkey import redis_url, start_valkey
from switchboard.sim.runner import Simulation
from tests.fixtures.broken_servers import fast_options
from tests.fixtures.ports import free_port

DEADLINE_S = 120.0
#: calls live on the old node while it is drained: long enough (turns x think) to outlast
#: the move by seconds, which the test checks on the node itself rather than assumes
OLD_CALLS, OLD_TURNS, OLD_THINK_MS = 6, 24, 400.0
NEW_CALLS = 8
#: per node in the validated deployment: the cap check fills both nodes (the validator is
#: told the deployment's total, which it cannot see through one load balancer)
MAX_CALLS = 10
ENV = {"SWITCHBOARD_CALL_DETAILS": "false", "SWITCHBOARD_LOG_LEVEL": "warning"}


def serve(name: str, port: int, log_dir: Path, *args: str, **env: str) -> Child:
    argv = [*SWITCHBOARD_ARGV, "serve", "--host", "127.0.0.1", "--port", str(port), *args]
    child = Child(name, argv, log_path=log_dir / f"{name}.log", port=port, env={**ENV, **env})
    try:
        wait_http_ready(child, f"http://127.0.0.1:{port}/readyz", DEADLINE_S)
    except BaseException:
        child.stop()
        raise
    return child


def active_calls(port: int) -> int:
    body = httpx.get(f"http://127.0.0.1:{port}/readyz", trust_env=False, timeout=5.0).json()
    return int(body["active_calls"])


def calls_served(port: int) -> float:
    """Calls a node has accepted, from its own /metrics."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", trust_env=False, timeout=5.0).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("switchboard_calls_total "):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` (a blocking HTTP probe) until it holds; fail naming ``what``."""
    try:
        async with asyncio.timeout(DEADLINE_S):
            while not await asyncio.to_thread(condition):
                await asyncio.sleep(0.05)
    except TimeoutError:
        pytest.fail(f"{what}: not within {DEADLINE_S:g} s")


@contextlib.contextmanager
def stopped_at_exit(children: list[Child]) -> Iterator[list[Child]]:
    try:
        yield children
    finally:
        for child in reversed(children):
            child.stop()


async def test_single_to_distributed_keeps_every_live_call(tmp_path: Path) -> None:
    lb_port = free_port()
    with stopped_at_exit([]) as children:
        old = serve("old", free_port(), tmp_path, "--profile", "single",
                    SWITCHBOARD_DRAIN_TIMEOUT_S=str(DEADLINE_S))  # fmt: skip
        children.append(old)
        old_port = old.port
        assert old_port is not None
        first = LoadBalancer(servers=(Server("old", "127.0.0.1", old_port),), port=lb_port)
        lb_old = start_haproxy(first, config_path=tmp_path / "haproxy-1.cfg", log_dir=tmp_path)
        children.append(lb_old)
        url = f"ws://127.0.0.1:{lb_port}/llm-websocket"

        # Calls are live on the old node.
        live = Simulation(
            fast_options(url, calls=OLD_CALLS, turns=OLD_TURNS, think_ms=OLD_THINK_MS, seed=3)
        )
        live_run = asyncio.create_task(live.run())
        await until(lambda: active_calls(old_port) == OLD_CALLS, "calls on the old node")

        # 1-2. Redis with persistence, and the new nodes beside the old one.
        valkey = start_valkey(log_dir=tmp_path)
        children.append(valkey)
        redis = redis_url(valkey)
        new = [
            serve(
                f"node-{i}",
                free_port(),
                tmp_path,
                "--profile",
                "distributed",
                "--redis-url",
                redis,
                "--node-id",
                f"node-{i}",
            )
            for i in (1, 2)
        ]
        children += new

        # 3. The load balancer moves: a reload lists the new nodes and the old one.
        servers = [Server("old", "127.0.0.1", old_port)]
        servers += [Server(n.name, "127.0.0.1", n.port or 0) for n in new]
        second = LoadBalancer(servers=tuple(servers), port=lb_port)
        lb_new = start_haproxy(
            second,
            config_path=tmp_path / "haproxy-2.cfg",
            log_dir=tmp_path / "lb-2",
            extra_args=["-sf", str(lb_old.pid)],
        )
        children.append(lb_new)

        # 4. Drain the old node with one SIGTERM while its calls are live.
        in_flight = active_calls(old_port)
        old.send_signal(signal.SIGTERM)
        await until(
            lambda: (
                httpx.get(f"http://127.0.0.1:{old_port}/readyz", trust_env=False).status_code == 503
            ),
            "the old node draining",
        )

        # New calls meanwhile: all on the new nodes.
        fresh = await Simulation(fast_options(url, calls=NEW_CALLS, turns=3, seed=4)).run()
        live_report = await live_run
        assert await asyncio.to_thread(old.wait, DEADLINE_S) == 0
        await asyncio.to_thread(lb_old.wait, DEADLINE_S)  # soft-stopped once its tunnels closed

        served_new = sum(calls_served(n.port or 0) for n in new)

    assert in_flight == OLD_CALLS  # the move happened with every old call live
    for report in (live_report, fresh):
        assert report.calls_failed == {}
        assert report.calls_completed == report.calls_started
        assert report.violations == {}, report.violation_samples  # no second greeting
        assert report.reconnect_events == []  # no socket dropped, none reconnected
    assert live_report.calls_started == OLD_CALLS
    assert fresh.calls_started == NEW_CALLS
    assert served_new == NEW_CALLS


def test_validate_passes_on_the_deployment_after_the_move(tmp_path: Path) -> None:
    """The moved-to deployment (two distributed nodes behind HAProxy) passes ``validate``."""
    with stopped_at_exit([]) as children:
        valkey = start_valkey(log_dir=tmp_path)
        children.append(valkey)
        nodes = [
            serve(
                f"node-{i}",
                free_port(),
                tmp_path,
                "--profile",
                "distributed",
                "--redis-url",
                redis_url(valkey),
                "--node-id",
                f"node-{i}",
                SWITCHBOARD_MAX_CALLS=str(MAX_CALLS),
            )
            for i in (1, 2)
        ]
        children += nodes
        lb = LoadBalancer(
            servers=tuple(Server(n.name, "127.0.0.1", n.port or 0) for n in nodes),
            port=free_port(),
        )
        children.append(start_haproxy(lb, config_path=tmp_path / "lb.cfg", log_dir=tmp_path))
        argv = ["validate", "--profile", "distributed", "--calls", "4", "--duration", "2"]
        argv += ["--url", f"ws://127.0.0.1:{lb.port}/llm-websocket"]
        argv += ["--capacity", str(2 * MAX_CALLS), "--report", str(tmp_path / "validation.html")]
        done = subprocess.run(
            [sys.executable, "-m", "switchboard", *argv],
            capture_output=True,
            text=True,
            timeout=DEADLINE_S * 3,
            check=False,
            env={**os.environ, **ENV},
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert "FAIL" not in done.stdout

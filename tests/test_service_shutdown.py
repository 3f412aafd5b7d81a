"""A service stops on SIGTERM even when its broker died under it: the bus calls in hand
(a Kafka fetch, commit or position waiting for a group coordinator that never comes back)
are abandoned and the client's close is bounded. Real tansu, killed with SIGKILL; the
service is a real process. It used to keep running past a minute."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

from switchboard.cluster.processes import Child, free_port, wait_http_ready
from switchboard.cluster.tansu import bootstrap, start_tansu
from tests.fixtures.services import start_service

#: generous: the process exits in about half a second once it gets the signal
EXIT_DEADLINE_S = 60.0


def _lag_known(port: int) -> bool:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", trust_env=False, timeout=5.0).text
    return "switchboard_service_bus_lag{" in text


@pytest.mark.parametrize("service", ["archive", "escalation"])
async def test_sigterm_stops_a_service_whose_kafka_broker_is_gone(
    service: str, tmp_path: Path, redis_server_url: str
) -> None:
    import asyncio

    broker = start_tansu(log_dir=tmp_path)
    child: Child | None = None
    try:
        port = free_port()
        args = ["--bus", f"kafka://{bootstrap(broker)}", "--db", str(tmp_path / "s.db")]
        args += ["--metrics-port", str(port)]
        if service == "escalation":
            rules = Path(__file__).parents[1] / "src/switchboard/examples/escalation.yaml"
            args += ["--redis-url", redis_server_url, "--rules", str(rules)]
        child = start_service(service, args, tmp_path)
        wait_http_ready(child, f"http://127.0.0.1:{port}/healthz", EXIT_DEADLINE_S)
        async with asyncio.timeout(EXIT_DEADLINE_S):  # consuming: it has read its group's lag
            while not await asyncio.to_thread(_lag_known, port):
                assert child.poll() is None, child.log_tail(30)
                await asyncio.sleep(0.1)
        broker.send_signal(signal.SIGKILL)
        broker.wait(EXIT_DEADLINE_S)
        child.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(child.wait, EXIT_DEADLINE_S)
        assert code == 0, child.log_tail(30)
        assert "service stopped" in child.log_tail(400)
    finally:
        if child is not None:
            child.stop()
        broker.stop()

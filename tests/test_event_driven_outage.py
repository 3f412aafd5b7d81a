"""The bus goes down mid-run (its server stopped, then started again, empty): calls go on
unharmed, the node's outbox spills and replays, and the archive ends with every turn the
simulator saw, once. All real processes. Once for a short outage (one batch of calls while
the bus is down), once for the issue's ``OUTAGE_S`` of live calls (the suite's slowest test:
the length of the outage is the point)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import msgspec
import pytest

from switchboard.cluster.processes import free_port, run_simulator, start_server
from switchboard.config import builtin_example
from switchboard.services.archive import open_archive
from switchboard.services.archive import queries as q
from switchboard.sim.verdict import judge
from tests.fixtures.outage import RestartableValkey
from tests.fixtures.services import start_service, until

pytestmark = pytest.mark.system

#: The long outage: callers keep placing calls for this many seconds while the bus is down.
OUTAGE_S = 60


def _simulate(
    port: int, tmp_path: Path, label: str, duration_s: float | None = None
) -> asyncio.Future[object]:
    args = ["--url", f"ws://127.0.0.1:{port}/llm-websocket", "--turns", "3", "--word-ms", "0"]
    args += ["--label", label, "--profile", "event-driven"]
    if duration_s is None:
        args += ["--calls", "12", "--think-ms", "0"]
    else:  # 4 callers, call after call, a turn every ~100 ms each, for duration_s
        args += ["--calls", "4", "--think-ms", "100", "--duration", f"{duration_s:g}"]
    return asyncio.ensure_future(
        asyncio.to_thread(
            run_simulator,
            args,
            json_path=tmp_path / f"{label}.json",
            log_dir=tmp_path,
            timeout_s=120,
        )
    )


async def _metric(port: int, name: str) -> float:
    async with httpx.AsyncClient(trust_env=False) as client:
        text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not on /metrics")


@pytest.mark.parametrize(
    "outage_s",
    [
        pytest.param(None, id="short"),
        # a minute of outage under load: make soak (the short one runs in make test)
        pytest.param(OUTAGE_S, id=f"{OUTAGE_S}s", marks=pytest.mark.soak),
    ],
)
async def test_bus_outage_mid_run_loses_and_doubles_nothing(
    redis_server_url: str,
    redis_namespace: str,
    private_valkey: RestartableValkey,
    tmp_path: Path,
    outage_s: float | None,
) -> None:
    bus = private_valkey.url
    env = {
        "SWITCHBOARD_PROFILE": "event-driven",
        "SWITCHBOARD_REDIS_URL": redis_server_url,
        "SWITCHBOARD_REDIS_NAMESPACE": redis_namespace,
        "SWITCHBOARD_BUS_URL": bus,
        "SWITCHBOARD_NODE_ID": "node-1",
        "SWITCHBOARD_OUTBOX_DIR": str(tmp_path / "outbox"),
        "SWITCHBOARD_CALL_DETAILS": "false",
    }
    node = start_server(
        port=free_port(), agent_file=builtin_example("receptionist.yaml"), log_dir=tmp_path, env=env
    )
    assert node.port is not None
    db_path = tmp_path / "archive.db"
    args = ["--bus", bus, "--namespace", redis_namespace, "--db", str(db_path)]
    service = start_service("archive", args, tmp_path)
    archive = None
    try:
        _, before = await _simulate(node.port, tmp_path, "before")  # type: ignore[misc]

        async def archived(count: int) -> bool:
            nonlocal archive
            if not db_path.exists():
                return False
            archive = archive or await open_archive(str(db_path))
            return (await q.stats(archive)).turns >= count

        await until(lambda: archived(before.turns), child=service)
        private_valkey.stop()
        _, during = await _simulate(node.port, tmp_path, "during", outage_s)  # type: ignore[misc]
        untimed = judge(msgspec.structs.replace(during, budget_ms=1e9))  # never judge timings
        assert untimed.passed, untimed.verdict_reasons
        assert during.calls_failed == {}

        async def spilled() -> bool:
            return await _metric(node.port, "switchboard_outbox_spilling") == 1.0  # type: ignore[arg-type]

        await until(spilled, child=node)
        private_valkey.start()
        total = before.turns + during.turns
        await until(lambda: archived(total), timeout=60, child=service)

        async def drained() -> bool:
            return await _metric(node.port, "switchboard_outbox_spilling") == 0.0  # type: ignore[arg-type]

        await until(drained, child=node)
        assert archive is not None
        stats = await q.stats(archive)
        assert stats.turns == total
        assert stats.calls == before.calls_started + during.calls_started
        rows = await archive.fetch(
            "SELECT COUNT(*), COUNT(DISTINCT event_id) FROM turns WHERE kind <> 'greeting'"
        )
        assert rows[0][0] == rows[0][1] == total
        assert await _metric(node.port, 'switchboard_outbox_events_total{outcome="replayed"}') > 0
    finally:
        service.stop()
        node.stop()
        if archive is not None:
            await archive.close()

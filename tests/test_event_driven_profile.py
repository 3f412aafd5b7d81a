"""The event-driven profile end to end, all real processes: two nodes (Redis state, events
on a Redis Streams bus), the archive service, the simulator. Every completed turn the
simulator saw is archived exactly once, at the size the issue asks for (``CALLS`` x
``TURNS`` through two nodes): none missing, none twice, and the analytics totals agree."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from switchboard.cluster.processes import Child, free_port, run_simulator, start_server
from switchboard.config import builtin_example
from switchboard.services.archive import open_archive
from switchboard.services.archive import queries as q
from tests.fixtures.services import SWITCHBOARD, start_service, until

#: The scale guarantee: this many calls (half per node) of this many caller turns each.
CALLS = 200
TURNS = 10


def _node_env(redis_url: str, namespace: str, node_id: str, tmp_path: Path) -> dict[str, str]:
    return {
        "SWITCHBOARD_PROFILE": "event-driven",
        "SWITCHBOARD_REDIS_URL": redis_url,
        "SWITCHBOARD_REDIS_NAMESPACE": namespace,
        "SWITCHBOARD_BUS_URL": redis_url,
        "SWITCHBOARD_NODE_ID": node_id,
        "SWITCHBOARD_OUTBOX_DIR": str(tmp_path / f"outbox-{node_id}"),
        "SWITCHBOARD_CALL_DETAILS": "false",
    }


@pytest.mark.system
async def test_two_nodes_every_simulated_turn_is_archived_once(
    redis_server_url: str, redis_namespace: str, tmp_path: Path
) -> None:
    agent = builtin_example("receptionist.yaml")
    nodes = [
        start_server(
            port=free_port(),
            agent_file=agent,
            log_dir=tmp_path,
            env=_node_env(redis_server_url, redis_namespace, f"node-{i}", tmp_path),
        )
        for i in (1, 2)
    ]
    db_path = tmp_path / "archive.db"
    archive_args = ["--bus", redis_server_url, "--namespace", redis_namespace, "--db", str(db_path)]
    service = start_service("archive", archive_args, tmp_path)
    analytics_port = free_port()
    analytics_args = ["--bus", redis_server_url, "--namespace", redis_namespace]
    analytics_args += ["--db", str(tmp_path / "an.db"), "--port", str(analytics_port)]
    analytics = start_service("analytics", analytics_args, tmp_path)
    archive = None
    try:
        runs = [
            asyncio.to_thread(
                run_simulator,
                [
                    "--url",
                    f"ws://127.0.0.1:{node.port}/llm-websocket",
                    "--calls",
                    str(CALLS // len(nodes)),
                    "--turns",
                    str(TURNS),
                    "--think-ms",
                    "0",
                    "--word-ms",
                    "0",
                    "--seed",
                    str(i),
                    "--label",
                    f"node{i}",
                ],
                json_path=tmp_path / f"sim-{i}.json",
                log_dir=tmp_path,
                timeout_s=300,
            )
            for i, node in enumerate(nodes)
        ]
        reports = [report for _, report in await asyncio.gather(*runs)]
        simulated_turns = sum(r.turns for r in reports)
        simulated_calls = sum(r.calls_started for r in reports)
        assert all(r.calls_failed == {} for r in reports)
        assert simulated_calls == CALLS
        assert simulated_turns >= CALLS * TURNS // 2  # some calls end early (a transfer)

        async def archived_all() -> bool:
            nonlocal archive
            if not db_path.exists():
                return False
            archive = archive or await open_archive(str(db_path))
            return (await q.stats(archive)).turns >= simulated_turns

        await until(archived_all, timeout=120, child=service)
        assert archive is not None
        stats = await q.stats(archive)
        assert stats.turns == simulated_turns
        assert stats.calls == simulated_calls
        rows = await archive.fetch("SELECT COUNT(*), COUNT(DISTINCT event_id) FROM turns")
        assert rows[0][0] == rows[0][1]
        answered = await archive.fetch(
            "SELECT COUNT(*), COUNT(DISTINCT call_id || ':' || response_id) FROM turns"
            " WHERE kind <> 'greeting' AND superseded = 0"
        )
        assert answered[0] == (simulated_turns, simulated_turns)  # 0 missing, 0 twice
        nodes_seen = await archive.fetch("SELECT DISTINCT node_id FROM calls ORDER BY node_id")
        assert [r[0] for r in nodes_seen] == ["node-1", "node-2"]

        async def analytics_totals() -> dict[str, Any]:
            async with httpx.AsyncClient(trust_env=False) as client:
                url = f"http://127.0.0.1:{analytics_port}/api/summary"
                data: dict[str, Any] = (await client.get(url)).json()["totals"]
                return data

        async def counted() -> bool:
            try:
                return (await analytics_totals())["turns"] >= simulated_turns
            except httpx.TransportError:
                return False

        await until(counted, timeout=120, child=analytics)
        totals = await analytics_totals()
        assert totals["turns"] == stats.turns
        assert totals["calls_started"] == stats.calls
        assert totals["active_calls"] == 0
    finally:
        analytics.stop()
        service.stop()
        for node in nodes:
            node.stop()
        if archive is not None:
            await archive.close()


def test_event_driven_without_a_bus_refuses_to_start(redis_server_url: str) -> None:
    from switchboard.config import Settings
    from switchboard.server.app import SwitchboardApp
    from tests.fixtures.agents import EchoAgent

    settings = Settings(profile="event-driven", redis_url=redis_server_url)
    with pytest.raises(ValueError, match="needs an event bus"):
        SwitchboardApp(settings, EchoAgent())


@pytest.mark.parametrize("url", ["ftp://x", "kafka://", "redis://"])
def test_bad_bus_urls_say_what_is_expected(url: str) -> None:
    from switchboard.events.buses import parse_bus_url

    with pytest.raises(ValueError, match="bus URL"):
        parse_bus_url(url)


@pytest.mark.system
def test_a_second_node_on_the_same_outbox_dir_refuses_to_start(
    redis_server_url: str, redis_namespace: str, tmp_path: Path
) -> None:
    env = _node_env(redis_server_url, redis_namespace, "same", tmp_path)
    agent = builtin_example("receptionist.yaml")
    first = start_server(port=free_port(), agent_file=agent, log_dir=tmp_path, env=env)
    try:
        argv = [*SWITCHBOARD, "serve", "--port", str(free_port()), "--agent-file", str(agent)]
        second = Child("second", argv, log_path=tmp_path / "second.log", env=env)
        try:
            assert second.wait(60) == 2
        finally:
            second.stop()
        assert "in use by another process" in second.log_tail()
    finally:
        first.stop()

"""Escalation on a live call, all real: two nodes, Redis state and command channel, events
on Redis Streams, ``switchboard service escalation`` as its own process. The caller asks
for a person on node a, the call moves to node b, the caller asks again: exactly one
handoff line with one transfer arrives, on the socket node b serves."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from switchboard.services.escalation.service import EscalationStore
from tests.fixtures.agents import EchoAgent
from tests.fixtures.conditions import eventually
from tests.fixtures.server import RunningServer, retell, running_server
from tests.fixtures.services import start_service, until

pytestmark = pytest.mark.integration

RULES = """
transfer_number: "+15550100"
handoff_line: "Let me connect you with a colleague."
rules:
  - {name: asks_for_human, when: asks_for_human, count: 2}
"""


@contextlib.asynccontextmanager
async def event_node(
    url: str, namespace: str, node_id: str, tmp: Path
) -> AsyncIterator[RunningServer]:
    async with running_server(
        EchoAgent(),
        profile="event-driven",
        redis_url=url,
        bus_url=url,
        redis_namespace=namespace,
        node_id=node_id,
        outbox_dir=tmp / f"outbox-{node_id}",
        call_details=False,
        heartbeat_ms=200,
    ) as srv:
        shared = srv.app.shared
        assert shared is not None
        await eventually(
            lambda: shared.listener is not None and shared.listener.subscribed.is_set()
        )
        yield srv


async def test_asking_twice_across_a_reconnect_gets_one_handoff_on_the_current_socket(
    redis_server_url: str, redis_namespace: str, tmp_path: Path
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    db = tmp_path / "escalation.db"
    args = ["--bus", redis_server_url, "--redis-url", redis_server_url]
    args += ["--namespace", redis_namespace, "--rules", str(rules), "--db", str(db)]
    service = start_service("escalation", args, tmp_path)
    store: EscalationStore | None = None
    try:
        async with (
            event_node(redis_server_url, redis_namespace, "a", tmp_path) as a,
            event_node(redis_server_url, redis_namespace, "b", tmp_path) as b,
            retell(a.ws_url, "call-esc") as old,
        ):
            await old.recv()  # config
            await old.complete(0)
            await old.request(1, "Hi, can I talk to a person?")
            await old.complete(1)
            async with retell(b.ws_url, "call-esc") as peer:  # Retell moved the call to b
                await peer.recv()
                await peer.complete(0)
                await old.closed()
                await peer.request(2, "Please, let me talk to a person.")
                frames = await peer.recv_until(
                    lambda f: f.get("response_type") == "agent_interrupt", timeout=30
                )
                interrupt = frames[-1]
                assert interrupt["content"] == "Let me connect you with a colleague."
                assert interrupt["transfer_number"] == "+15550100"
                # A third ask: processed, and nothing more is sent.
                await peer.request(3, "I said talk to a person!")
                store = await EscalationStore.open(db)

                async def third_seen() -> bool:
                    assert store is not None
                    rows: Any = await store._db.execute_fetchall(
                        "SELECT track FROM tracks WHERE call_id = 'call-esc'"
                    )
                    return bool(rows) and '"human_asks":3' in rows[0][0]

                await until(third_seen, child=service)
                await peer.send(interaction_type="ping_pong", timestamp=1)
                later = await peer.recv_until(lambda f: f.get("response_type") == "ping_pong")
                assert not [f for f in later if f.get("response_type") == "agent_interrupt"]
                assert await store.rows() == [("call-esc", "asks_for_human", "transfer", "done")]
        assert b.app.node.node_id == "b"
    finally:
        service.stop()
        if store is not None:
            await store.close()

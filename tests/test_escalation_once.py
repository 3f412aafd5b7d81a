"""Escalation carried out exactly once, through the faults that used to break it: Redis
failing while acting, the service killed with SIGKILL between acting and recording, the
bus refusing the report, turns replayed long after they happened.

Real parts only: nodes in the test's loop, one valkey-server (command channel and Redis
Streams), a TCP proxy that blackholes links, and ``switchboard service escalation`` as
its own process where a kill is the point.
"""

from __future__ import annotations

import signal
import sqlite3
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgspec
import pytest

from switchboard.control.client import CallControl
from switchboard.events.bus import Batch
from switchboard.events.buses.memory import MemoryBus
from switchboard.events.buses.redis import RedisStreamBus
from switchboard.events.types import CallEscalated, Event, TurnCompleted, make_event
from switchboard.services.escalation.rules import parse_rules
from switchboard.services.escalation.service import Escalation, EscalationStore
from tests.fixtures.agents import EchoAgent
from tests.fixtures.conditions import eventually_async
from tests.fixtures.distributed import begin, node
from tests.fixtures.server import RetellPeer, retell
from tests.fixtures.services import start_service, until

pytestmark = pytest.mark.system

RULES = """
transfer_number: "+15550100"
handoff_line: "Let me connect you with a colleague."
rules:
  - {name: human, when: asks_for_human, count: 1}
"""


def _ask(call_id: str, *, age_s: float = 0.0) -> Event:
    data = TurnCompleted(response_id=1, kind="response", caller_line="Let me talk to a person")
    event = make_event(data, call_id=call_id, source="node/a")
    return msgspec.structs.replace(event, time=event.time - timedelta(seconds=age_s))


def _is_interrupt(frame: dict[str, Any]) -> bool:
    return bool(frame.get("response_type") == "agent_interrupt")


async def _no_interrupt(peer: RetellPeer) -> None:
    """Nothing was spoken on ``peer`` since the last read: a ping answered after it proves it."""
    await peer.send(interaction_type="ping_pong", timestamp=1)
    frames = await peer.recv_until(lambda f: f.get("response_type") == "ping_pong")
    assert [f for f in frames if _is_interrupt(f)] == []


def _proxied(url: str, netloc: str) -> str:
    return urlsplit(url)._replace(netloc=netloc).geturl()


def _escalated(bus: MemoryBus) -> list[CallEscalated]:
    from switchboard.events.codec import decode

    return [e.data for e in map(decode, bus.log) if isinstance(e.data, CallEscalated)]


async def test_a_redis_error_while_acting_is_retried_until_the_call_is_transferred(
    tmp_path: Path, redis_server_url: str, redis_namespace: str, fault_proxy: Any
) -> None:
    address = urlsplit(redis_server_url)
    proxy = await fault_proxy(address.hostname, address.port).start()
    control = CallControl.from_url(
        _proxied(redis_server_url, proxy.url_netloc), namespace=redis_namespace, move_wait_s=1.0
    )
    bus = MemoryBus()
    store = await EscalationStore.open(tmp_path / "esc.db")
    async with (
        httpx.AsyncClient(trust_env=False) as http,
        node(EchoAgent(), redis_server_url, redis_namespace, "a") as a,
        retell(a.ws_url, "call-r") as peer,
    ):
        await begin(peer)
        handler = Escalation(parse_rules(RULES), store, control, bus, http, sweep_interval_s=0.1)
        proxy.blackhole()  # the service's link to Redis dies
        await handler.handle(Batch([_ask("call-r")]))  # handled: the runner may ack
        assert await store.rows() == [("call-r", "human", "transfer", "pending")]
        assert _escalated(bus) == []
        await handler.resume_pending()  # the sweep runs from now on; still no Redis
        assert await store.rows() == [("call-r", "human", "transfer", "pending")]

        proxy.restore()
        frames = await peer.recv_until(_is_interrupt, timeout=30)
        assert frames[-1]["transfer_number"] == "+15550100"

        async def done() -> bool:
            return await store.rows() == [("call-r", "human", "transfer", "done")]

        await eventually_async(done, timeout=30)
        await eventually_async(lambda: _published(bus), timeout=30)
        (report,) = _escalated(bus)
        assert report.action == "transfer"
        await _no_interrupt(peer)
        await handler.stop()
    await store.close()
    await control.aclose()


async def _published(bus: MemoryBus) -> bool:
    return bool(_escalated(bus))


async def test_a_decision_that_cannot_be_carried_out_in_time_is_reported_failed(
    tmp_path: Path, redis_server_url: str, redis_namespace: str, fault_proxy: Any
) -> None:
    address = urlsplit(redis_server_url)
    proxy = await fault_proxy(address.hostname, address.port).start()
    control = CallControl.from_url(
        _proxied(redis_server_url, proxy.url_netloc), namespace=redis_namespace, move_wait_s=0.5
    )
    bus = MemoryBus()
    store = await EscalationStore.open(tmp_path / "esc.db")
    async with httpx.AsyncClient(trust_env=False) as http:
        handler = Escalation(
            parse_rules(RULES),
            store,
            control,
            bus,
            http,
            pending_max_age_s=0.5,
            sweep_interval_s=0.1,
        )
        proxy.blackhole()
        await handler.handle(Batch([_ask("call-late")]))
        await handler.resume_pending()

        async def failed() -> bool:
            return await store.rows() == [("call-late", "human", "transfer", "failed")]

        await eventually_async(failed, timeout=30)
        await eventually_async(lambda: _published(bus), timeout=30)
        (report,) = _escalated(bus)
        assert report.action == "transfer_failed"
        assert "gave up after" in report.detail
        await handler.stop()
    await store.close()
    await control.aclose()


async def test_a_command_that_timed_out_but_worked_is_recorded_done(
    tmp_path: Path, redis_server_url: str, redis_namespace: str
) -> None:
    """The node acts but its reply comes too late: the decision is not recorded as failed;
    asked again with the same key, the node's record says it was done."""
    control = CallControl.from_url(
        redis_server_url, namespace=redis_namespace, timeout_s=0.0, move_wait_s=0.0
    )
    bus = MemoryBus()
    store = await EscalationStore.open(tmp_path / "esc.db")
    async with (
        httpx.AsyncClient(trust_env=False) as http,
        node(EchoAgent(), redis_server_url, redis_namespace, "a") as a,
        retell(a.ws_url, "call-t") as peer,
    ):
        await begin(peer)
        handler = Escalation(parse_rules(RULES), store, control, bus, http, sweep_interval_s=0.1)
        await handler.handle(Batch([_ask("call-t")]))  # no reply in time: outcome unknown
        assert await store.rows() == [("call-t", "human", "transfer", "pending")]
        frames = await peer.recv_until(_is_interrupt)  # yet the node carried it out
        assert frames[-1]["transfer_number"] == "+15550100"
        await handler.resume_pending()

        async def done() -> bool:
            return await store.rows() == [("call-t", "human", "transfer", "done")]

        await eventually_async(done, timeout=30)
        (report,) = _escalated(bus)
        assert report.action == "transfer"
        await _no_interrupt(peer)
        await handler.stop()
    await store.close()
    await control.aclose()


async def test_stale_turns_never_trigger_an_action(
    tmp_path: Path, redis_server_url: str, redis_namespace: str
) -> None:
    control = CallControl.from_url(redis_server_url, namespace=redis_namespace)
    bus = MemoryBus()
    store = await EscalationStore.open(tmp_path / "esc.db")
    async with (
        httpx.AsyncClient(trust_env=False) as http,
        node(EchoAgent(), redis_server_url, redis_namespace, "a") as a,
        retell(a.ws_url, "call-s") as peer,
    ):
        await begin(peer)
        handler = Escalation(parse_rules(RULES), store, control, bus, http, stale_after_s=60)
        # Replayed from a node's spill five minutes after the caller said it.
        await handler.handle(Batch([_ask("call-s", age_s=300)]))
        assert await store.rows() == []
        assert bus.log == []
        await _no_interrupt(peer)
        # Said now, it is acted on.
        await handler.handle(Batch([_ask("call-s")]))
        assert await store.rows() == [("call-s", "human", "transfer", "done")]
        frames = await peer.recv_until(_is_interrupt)
        assert frames[-1]["content"] == "Let me connect you with a colleague."
    await store.close()
    await control.aclose()


async def test_call_escalated_is_published_once_the_bus_takes_it(
    tmp_path: Path, redis_server_url: str, redis_namespace: str, fault_proxy: Any
) -> None:
    address = urlsplit(redis_server_url)
    proxy = await fault_proxy(address.hostname, address.port).start()
    bus = RedisStreamBus(_proxied(redis_server_url, proxy.url_netloc), namespace=redis_namespace)
    reader = RedisStreamBus(redis_server_url, namespace=redis_namespace)
    consumer = reader.consumer("check", "c1")
    await consumer.fetch(timeout_s=0.1)  # the group exists before anything is published
    control = CallControl.from_url(redis_server_url, namespace=redis_namespace)
    store = await EscalationStore.open(tmp_path / "esc.db")
    async with (
        httpx.AsyncClient(trust_env=False) as http,
        node(EchoAgent(), redis_server_url, redis_namespace, "a") as a,
        retell(a.ws_url, "call-p") as peer,
    ):
        await begin(peer)
        handler = Escalation(parse_rules(RULES), store, control, bus, http, sweep_interval_s=0.1)
        proxy.blackhole()  # the bus is down; the command channel is not
        await handler.handle(Batch([_ask("call-p")]))
        await peer.recv_until(_is_interrupt)
        assert await store.rows() == [("call-p", "human", "transfer", "done")]
        await handler.resume_pending()
        proxy.restore()
        got: list[Event] = []

        async def reported() -> bool:
            batch = await consumer.fetch(timeout_s=0.2)
            got.extend(e for e in batch.events if isinstance(e.data, CallEscalated))
            await consumer.ack(batch)
            return bool(got)

        await eventually_async(reported, timeout=30)
        assert [e.data.action for e in got] == ["transfer"]  # type: ignore[attr-defined]

        async def marked() -> bool:
            return await store.unpublished() == []

        await eventually_async(marked, timeout=30)
        await handler.stop()
    await consumer.close()
    await reader.close()
    await bus.close()
    await store.close()
    await control.aclose()


async def test_the_service_killed_between_acting_and_recording_acts_once_after_restart(
    tmp_path: Path, redis_server_url: str, redis_namespace: str
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    db = tmp_path / "escalation.db"
    args = ["--bus", redis_server_url, "--redis-url", redis_server_url]
    args += ["--namespace", redis_namespace, "--rules", str(rules), "--db", str(db)]
    async with (
        node(EchoAgent(), redis_server_url, redis_namespace, "a") as a,
        retell(a.ws_url, "call-k") as peer,
    ):
        await begin(peer)
        store = await EscalationStore.open(db)
        await store.decide(parse_rules(RULES), [_ask("call-k")])  # decided, not yet acted
        await store.close()
        # Another writer holds the database: the service can act but cannot record.
        lock = sqlite3.connect(db, isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")
        first = start_service("escalation", args, tmp_path, tag="-1")
        try:
            frames = await peer.recv_until(_is_interrupt, timeout=60)
            assert frames[-1]["transfer_number"] == "+15550100"
            first.send_signal(signal.SIGKILL)
            first.wait(30)
        finally:
            first.stop()
            lock.execute("ROLLBACK")
            lock.close()
        store = await EscalationStore.open(db)
        try:
            assert await store.rows() == [("call-k", "human", "transfer", "pending")]
            second = start_service("escalation", args, tmp_path, tag="-2")
            try:

                async def done() -> bool:
                    assert store is not None
                    return await store.rows() == [("call-k", "human", "transfer", "done")]

                await until(done, child=second)
                await _no_interrupt(peer)
            finally:
                second.stop()
        finally:
            await store.close()

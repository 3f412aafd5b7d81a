"""A member killed with batches in hand: the group's survivor gets them (Redis Streams via
``XAUTOCLAIM``, Kafka via the broker's session timeout); a dead bus says so quickly."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from switchboard.cluster.processes import Child, free_port
from switchboard.events.bus import BusUnavailable
from switchboard.events.buses import open_bus
from switchboard.events.buses.kafka import KafkaBus
from switchboard.events.buses.redis import RedisStreamBus
from switchboard.events.codec import encode_all
from switchboard.events.types import CallStarted, make_event
from tests.fixtures.buses import KAFKA_SESSION_TIMEOUT_MS, collect

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent


def _member(url: str, namespace: str, tmp_path: Path) -> Child:
    argv = [sys.executable, "-m", "tests.fixtures.bus_member", url, namespace, "g", "doomed"]
    return Child(
        "bus member", argv, log_path=tmp_path / "member.log", env={"PYTHONPATH": str(ROOT)}
    )


async def _wait_holding(child: Child, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while "holding" not in child.log_path.read_text(errors="replace"):
        if child.poll() is not None or time.monotonic() > deadline:
            raise child.error("never fetched its batch")
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("backend", ["redis", "kafka"])
async def test_survivor_takes_over_a_killed_members_batch(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    namespace = request.getfixturevalue("redis_namespace")
    if backend == "redis":
        url = request.getfixturevalue("redis_server_url") + "?claim_idle_ms=300"
    else:
        topic = request.getfixturevalue("kafka_topic")
        url = (
            f"kafka://{request.getfixturevalue('kafka_bootstrap')}?topic={topic}"
            f"&partitions=1&session_timeout_ms={KAFKA_SESSION_TIMEOUT_MS}"
        )
    bus = open_bus(url, namespace=namespace)
    sent = [make_event(CallStarted(node_id="n"), call_id=f"c{i}", source="t") for i in range(20)]
    if isinstance(bus, KafkaBus):
        await bus.ensure_topic()
    member = _member(url, namespace, tmp_path)
    try:
        if isinstance(bus, RedisStreamBus):  # the group must exist before the send
            await bus.consumer("g", "setup").fetch(timeout_s=0.01)
        await bus.send(encode_all(sent))
        await _wait_holding(member)
        os.kill(member.pid, signal.SIGKILL)
        member.wait(10)
        survivor = bus.consumer("g", "survivor")
        got, _ = await collect(survivor, len(sent), timeout_s=60)
        await survivor.close()
        assert {e.id for e in got} == {e.id for e in sent}
    finally:
        member.stop()
        await bus.close()


async def test_redis_bus_down_raises_bus_unavailable_quickly() -> None:
    bus = RedisStreamBus(f"redis://127.0.0.1:{free_port()}/0", timeout_s=0.2)
    event = make_event(CallStarted(node_id="n"), call_id="c", source="t")
    async with asyncio.timeout(5):
        with pytest.raises(BusUnavailable):
            await bus.send(encode_all([event]))
    await bus.close()


async def test_kafka_bus_down_raises_bus_unavailable_quickly() -> None:
    bus = KafkaBus(f"127.0.0.1:{free_port()}", timeout_s=0.5)
    event = make_event(CallStarted(node_id="n"), call_id="c", source="t")
    async with asyncio.timeout(10):
        with pytest.raises(BusUnavailable):
            await bus.send(encode_all([event]))
    await bus.close()


async def test_redis_entries_written_by_other_tools_are_read_or_skipped(
    redis_server_url: str, redis_namespace: str
) -> None:
    bus = RedisStreamBus(redis_server_url, namespace=redis_namespace)
    consumer = bus.consumer("g", "m")
    await consumer.fetch(timeout_s=0.01)  # creates the group
    event = make_event(CallStarted(node_id="n"), call_id="c1", source="t")
    (message,) = encode_all([event])
    single = {b"key": message.key, b"value": message.value}
    single.update({b"h:" + k.encode(): v for k, v in message.headers})
    await bus.client.xadd(bus.stream, single)  # type: ignore[arg-type]
    await bus.client.xadd(bus.stream, {b"batch": b"\xc1 not msgpack"})
    await bus.client.xadd(bus.stream, {b"someone": b"else"})
    last = make_event(CallStarted(node_id="n"), call_id="c2", source="t")
    await bus.send(encode_all([last]))
    got, batches = await collect(consumer, 2)
    skipped = sum((b.skipped for b in batches), start=Counter())
    await consumer.close()
    await bus.close()
    assert [e.id for e in got] == [event.id, last.id]
    assert skipped == {"foreign": 2}

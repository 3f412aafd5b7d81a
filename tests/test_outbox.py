"""The outbox: batches in order, spills when the bus is down, replays in order when it is
back, replays a killed node's spill file, and what it does when full."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from switchboard.cluster.processes import Child
from switchboard.events.buses.memory import MemoryBus
from switchboard.events.buses.redis import RedisStreamBus
from switchboard.events.codec import decode, encode
from switchboard.events.outbox import Outbox, OutboxOptions
from switchboard.events.spill import SpillFile
from switchboard.events.types import Event, TurnCompleted, make_event
from tests.fixtures.buses import collect
from tests.fixtures.conditions import eventually
from tests.fixtures.outage import RestartableValkey

ROOT = Path(__file__).resolve().parent.parent


def _events(n: int, calls: int = 4, start: int = 0) -> list[Event]:
    return [
        make_event(
            TurnCompleted(response_id=i, kind="response", reply=f"r{i}"),
            call_id=f"call-{i % calls}",
            source="node/test",
        )
        for i in range(start, start + n)
    ]


def _fast(spill_dir: Path | None, **kw: object) -> OutboxOptions:
    return OutboxOptions(spill_dir=spill_dir, retry_initial_s=0.02, retry_max_s=0.1, **kw)  # type: ignore[arg-type]


async def _stream_ids(bus: RedisStreamBus, expected: int) -> list[str]:
    consumer = bus.consumer("check", "c1")
    got, _ = await collect(consumer, expected)
    await consumer.close()
    return [e.id for e in got]


async def test_events_reach_the_bus_in_put_order_in_batches() -> None:
    bus = MemoryBus()
    outbox = Outbox(bus, OutboxOptions(batch_max=50))
    outbox.start()
    sent = _events(300)
    for event in sent:
        outbox.put(event)
    await eventually(lambda: len(bus.log) == 300)
    await outbox.close()
    assert [decode(m).id for m in bus.log] == [e.id for e in sent]
    assert outbox.stats.batches <= 300 // 50 + 1
    assert outbox.stats.sent == 300


async def test_bus_down_spills_then_replays_in_order_when_it_returns(
    private_valkey: RestartableValkey, tmp_path: Path
) -> None:
    bus = RedisStreamBus(private_valkey.url, namespace="t:", timeout_s=0.2)
    outbox = Outbox(bus, _fast(tmp_path / "spill"))
    outbox.start()
    before = _events(20)
    for event in before:
        outbox.put(event)
    await eventually(lambda: outbox.stats.sent == 20)
    private_valkey.stop()
    during = _events(200, start=20)
    for event in during:
        outbox.put(event)
    await eventually(lambda: outbox.stats.spilled == 200)
    assert outbox.spilling
    private_valkey.start()  # an empty server: the stream starts afresh
    await eventually(lambda: not outbox.spilling, timeout=20)
    after = _events(10, start=220)
    for event in after:
        outbox.put(event)
    await eventually(lambda: outbox.stats.sent == 30)
    ids = await _stream_ids(bus, 210)
    await outbox.close()
    await bus.close()
    assert ids == [e.id for e in during + after]
    assert outbox.stats.replayed == 200


@pytest.mark.system
async def test_a_killed_nodes_spilled_events_are_replayed_by_the_next_run(
    private_valkey: RestartableValkey, tmp_path: Path
) -> None:
    spill_dir = tmp_path / "spill"
    private_valkey.stop()
    argv = [sys.executable, "-m", "tests.fixtures.outbox_node", private_valkey.url]
    argv += [str(spill_dir), "150"]
    node = Child("node", argv, log_path=tmp_path / "node.log", env={"PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 30
        while "spilled 150" not in node.log_path.read_text(errors="replace"):
            if node.poll() is not None or time.monotonic() > deadline:
                raise node.error("did not spill")
            await asyncio.sleep(0.05)
        os.kill(node.pid, signal.SIGKILL)
        node.wait(10)
    finally:
        node.stop()
    private_valkey.start()
    bus = RedisStreamBus(private_valkey.url, namespace="", timeout_s=0.5)
    outbox = Outbox(bus, _fast(spill_dir))
    assert outbox.spilling
    outbox.start()
    await eventually(lambda: not outbox.spilling, timeout=20)
    consumer = bus.consumer("check", "c1")
    got, _ = await collect(consumer, 150)
    await consumer.close()
    await outbox.close()
    await bus.close()
    assert [e.data.response_id for e in got] == list(range(150))  # type: ignore[attr-defined]


async def test_overflow_moves_the_queue_to_the_spill_file_in_order(
    private_valkey: RestartableValkey, tmp_path: Path
) -> None:
    private_valkey.stop()
    bus = RedisStreamBus(private_valkey.url, namespace="t:", timeout_s=0.2)
    outbox = Outbox(bus, _fast(tmp_path / "spill", capacity=10))
    sent = _events(95)
    for event in sent:  # the sender has not even run: the put path spills by itself
        outbox.put(event)
    assert outbox.depth <= 10
    assert outbox.stats.spilled >= 85
    private_valkey.start()
    outbox.start()
    await eventually(lambda: not outbox.spilling and outbox.depth == 0, timeout=20)
    ids = await _stream_ids(bus, 95)
    await outbox.close()
    await bus.close()
    assert ids == [e.id for e in sent]


async def test_overflow_without_a_spill_dir_drops_the_newest_and_counts_them() -> None:
    bus = MemoryBus()
    outbox = Outbox(bus, OutboxOptions(capacity=10))
    sent = _events(25)
    for event in sent:
        outbox.put(event)
    assert outbox.stats.dropped == 15
    outbox.start()
    await eventually(lambda: len(bus.log) == 10)
    await outbox.close()
    assert [decode(m).id for m in bus.log] == [e.id for e in sent[:10]]


async def test_close_spills_what_it_could_not_send(
    private_valkey: RestartableValkey, tmp_path: Path
) -> None:
    private_valkey.stop()
    bus = RedisStreamBus(private_valkey.url, namespace="t:", timeout_s=0.2)
    outbox = Outbox(bus, OutboxOptions(spill_dir=tmp_path / "spill", close_timeout_s=0.5))
    outbox.start()
    for event in _events(7):
        outbox.put(event)
    await outbox.close()
    await bus.close()
    spill = SpillFile(tmp_path / "spill")
    messages, _ = spill.read(100)
    spill.close()
    assert len(messages) == 7


@pytest.mark.integration
def test_a_second_process_cannot_share_a_spill_dir(tmp_path: Path) -> None:
    first = SpillFile(tmp_path)
    code = (
        "import sys; from pathlib import Path\n"
        "from switchboard.events.spill import SpillFile, SpillLocked\n"
        "try:\n SpillFile(Path(sys.argv[1]))\nexcept SpillLocked:\n sys.exit(3)\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=False)
    first.close()
    assert result.returncode == 3


def test_a_record_cut_short_by_a_crash_is_dropped_and_the_rest_kept(tmp_path: Path) -> None:
    spill = SpillFile(tmp_path)
    spill.append(encode(e) for e in _events(3))
    spill.close()
    with (tmp_path / SpillFile.LOG).open("ab") as f:
        f.write(b"\x00\x00\x01\x00partial")
    spill = SpillFile(tmp_path)
    messages, end = spill.read(100)
    assert len(messages) == 3
    spill.commit(end)
    assert not spill.pending
    spill.close()

"""The outbox under faults: damaged spill files, a full disk, a refused or hung bus, a node
killed while spilling. Each loses at most what the fault itself destroyed, never raises
into ``put`` and never hammers the bus."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import struct
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from switchboard.cluster.processes import Child, free_port
from switchboard.events.bus import MessagesRejected
from switchboard.events.buses.kafka import KafkaBus
from switchboard.events.buses.redis import RedisStreamBus
from switchboard.events.codec import encode
from switchboard.events.metrics import OutboxCollector
from switchboard.events.outbox import Outbox, OutboxOptions
from switchboard.events.parked import read_parked
from switchboard.events.spill import HEADER_BYTES, SpillFile
from switchboard.events.types import Event, TurnCompleted, make_event
from tests.fixtures.buses import collect
from tests.fixtures.conditions import eventually
from tests.fixtures.outage import RestartableValkey

ROOT = Path(__file__).resolve().parent.parent


def _events(n: int, start: int = 0) -> list[Event]:
    return [
        make_event(
            TurnCompleted(response_id=i, kind="response", reply=f"r{i}"),
            call_id=f"call-{i % 4}",
            source="node/test",
        )
        for i in range(start, start + n)
    ]


def _spill_40(directory: Path) -> list[int]:
    """40 records in a spill file; the byte offset where each starts."""
    spill = SpillFile(directory)
    starts = []
    for event in _events(40):
        starts.append(spill.size)
        spill.append([encode(event)])
    spill.close()
    return starts


def _replay_all(directory: Path) -> tuple[list[int], int]:
    """Every response id a fresh reader gets out of the file, and how many damaged
    stretches it skipped."""
    spill = SpillFile(directory)
    got: list[int] = []
    while spill.pending:
        messages, end = spill.read(7)
        got += [json.loads(m.value)["response_id"] for m in messages]
        spill.commit(end)
    corrupt = spill.corrupt
    spill.close()
    return got, corrupt


def _patch(path: Path, at: int, data: bytes) -> None:
    with path.open("r+b") as f:
        f.seek(at)
        f.write(data)


def test_a_bad_length_in_record_3_of_40_loses_only_that_record(tmp_path: Path) -> None:
    starts = _spill_40(tmp_path)
    _patch(tmp_path / SpillFile.LOG, starts[2] + 4, struct.pack(">I", 10_000_000))
    got, corrupt = _replay_all(tmp_path)
    assert got == [i for i in range(40) if i != 2]
    assert corrupt == 1


def test_a_length_pointing_past_the_end_loses_only_that_record(tmp_path: Path) -> None:
    starts = _spill_40(tmp_path)
    _patch(tmp_path / SpillFile.LOG, starts[2] + 4, struct.pack(">I", 60))
    got, corrupt = _replay_all(tmp_path)
    assert got == [i for i in range(40) if i != 2]
    assert corrupt == 1


def test_an_offset_pointing_mid_record_loses_at_most_that_record(tmp_path: Path) -> None:
    starts = _spill_40(tmp_path)
    (tmp_path / SpillFile.OFFSET).write_text(str(starts[2] + HEADER_BYTES + 3))
    got, corrupt = _replay_all(tmp_path)
    assert got == list(range(3, 40))  # 0-1 were replayed; 2 is the one cut in half
    assert corrupt == 1


def test_flipped_bytes_in_a_record_lose_only_that_record(tmp_path: Path) -> None:
    starts = _spill_40(tmp_path)
    _patch(tmp_path / SpillFile.LOG, starts[10] + HEADER_BYTES + 5, b"\xff\xfe")
    _patch(tmp_path / SpillFile.LOG, starts[30] + 1, b"X")  # its magic
    got, corrupt = _replay_all(tmp_path)
    assert got == [i for i in range(40) if i not in (10, 30)]
    assert corrupt == 2


async def test_damaged_records_are_counted_and_the_rest_reach_the_bus(
    private_valkey: RestartableValkey, tmp_path: Path
) -> None:
    starts = _spill_40(tmp_path)
    _patch(tmp_path / SpillFile.LOG, starts[5] + 4, b"\xff\xff\xff\xff")
    bus = RedisStreamBus(private_valkey.url, namespace="t:", timeout_s=0.5)
    outbox = Outbox(bus, OutboxOptions(spill_dir=tmp_path, retry_initial_s=0.02))
    outbox.start()
    await eventually(lambda: not outbox.spilling, timeout=20)
    consumer = bus.consumer("check", "c1")
    got, _ = await collect(consumer, 39)
    await consumer.close()
    await outbox.close()
    await bus.close()
    assert [e.data.response_id for e in got] == [i for i in range(40) if i != 5]  # type: ignore[attr-defined]
    assert outbox.corrupt == 1


@pytest.fixture
def refused_url() -> str:
    """A Redis URL on a port nothing listens on: every connection is refused at once."""
    return f"redis://127.0.0.1:{free_port()}/0"


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A Redis URL whose server accepts connections (the kernel completes them) but never
    reads or answers: a hung bus."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    try:
        yield f"redis://127.0.0.1:{sock.getsockname()[1]}/0"
    finally:
        sock.close()


@pytest.mark.parametrize("spill", [True, False], ids=["spill", "memory"])
@pytest.mark.integration
async def test_puts_never_cut_a_backoff_short(
    refused_url: str, tmp_path: Path, spill: bool
) -> None:
    bus = RedisStreamBus(refused_url, namespace="t:", timeout_s=0.5)
    options = OutboxOptions(
        spill_dir=tmp_path if spill else None, retry_initial_s=3600, retry_max_s=3600
    )
    outbox = Outbox(bus, options)
    outbox.start()
    outbox.put(_events(1)[0])
    await eventually(lambda: outbox.stats.send_failures == 1)
    for event in _events(300, start=1):
        outbox.put(event)
        for _ in range(5):  # let the sender run, were it woken
            await asyncio.sleep(0)
    assert outbox.stats.send_failures == 1
    await outbox.close()
    await bus.close()


@pytest.mark.integration
async def test_while_spilling_put_writes_to_the_file_at_once(
    refused_url: str, tmp_path: Path
) -> None:
    bus = RedisStreamBus(refused_url, namespace="t:", timeout_s=0.5)
    outbox = Outbox(bus, OutboxOptions(spill_dir=tmp_path, retry_initial_s=3600))
    outbox.start()
    outbox.put(_events(1)[0])
    await eventually(lambda: outbox.spilling)
    size = (tmp_path / SpillFile.LOG).stat().st_size
    for event in _events(5, start=1):
        outbox.put(event)  # no await: nothing else could move it
    assert outbox.depth == 0
    assert outbox.stats.spilled == 6
    assert (tmp_path / SpillFile.LOG).stat().st_size > size
    await outbox.close()
    await bus.close()


@pytest.mark.integration
async def test_a_hung_send_spills_what_waits_behind_it(silent_url: str, tmp_path: Path) -> None:
    bus = RedisStreamBus(silent_url, namespace="t:", timeout_s=120)
    outbox = Outbox(bus, OutboxOptions(spill_dir=tmp_path, stall_s=0.1, close_timeout_s=0.5))
    outbox.start()
    for event in _events(3):
        outbox.put(event)
    await eventually(lambda: outbox.stats.stalls == 1)
    assert outbox.stats.spilled == 3  # the batch in flight too
    outbox.put(_events(1, start=3)[0])
    assert outbox.stats.spilled == 4
    await outbox.close()
    await bus.close()


@pytest.mark.integration
async def test_a_spill_cap_drops_counts_and_never_raises(refused_url: str, tmp_path: Path) -> None:
    bus = RedisStreamBus(refused_url, namespace="t:", timeout_s=0.5)
    outbox = Outbox(bus, OutboxOptions(spill_dir=tmp_path, spill_max_bytes=4096))
    outbox.start()
    outbox.put(_events(1)[0])
    await eventually(lambda: outbox.spilling)
    for event in _events(200, start=1):
        outbox.put(event)
    await outbox.close()
    await bus.close()
    assert outbox.stats.put == 201
    assert 0 < outbox.stats.spilled < 201
    assert outbox.stats.spilled + outbox.stats.dropped == 201
    assert outbox.stats.dropped_by_reason == {"spill_full": outbox.stats.dropped}
    assert (tmp_path / SpillFile.LOG).stat().st_size <= 4096


def _child(tmp_path: Path, name: str, *args: str) -> Child:
    argv = [sys.executable, "-m", "tests.fixtures.outbox_node", *args]
    return Child(name, argv, log_path=tmp_path / f"{name}.log", env={"PYTHONPATH": str(ROOT)})


async def _line(child: Child, prefix: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while True:
        for line in child.log_path.read_text(errors="replace").splitlines():
            if line.startswith(prefix):
                return line
        if child.poll() is not None or time.monotonic() > deadline:
            raise child.error(f"no {prefix!r} line")
        await asyncio.sleep(0.05)


@pytest.mark.integration
async def test_a_full_disk_never_raises_into_put(refused_url: str, tmp_path: Path) -> None:
    spill_dir = tmp_path / "spill"
    node = _child(tmp_path, "node", refused_url, str(spill_dir), "2000", "fsize:65536")
    try:
        line = await _line(node, "stats ")
        assert node.wait(30) == 0
    finally:
        node.stop()
    stats = json.loads(line.removeprefix("stats "))
    assert stats["put"] == 2000
    assert stats["spilled"] > 0
    assert stats["spilled"] + stats["dropped"] == 2000
    assert set(stats["dropped_by_reason"]) == {"spill_full"}
    # what the disk took is whole: every record in it replays
    got, corrupt = _replay_all(spill_dir)
    assert corrupt == 0
    assert got == list(range(stats["spilled"]))


async def test_a_node_killed_while_a_send_hangs_loses_nothing_put_accepted(
    silent_url: str, private_valkey: RestartableValkey, tmp_path: Path
) -> None:
    spill_dir = tmp_path / "spill"
    node = _child(tmp_path, "node", silent_url, str(spill_dir), "60", "hang")
    try:
        await _line(node, "put 60")
        os.kill(node.pid, signal.SIGKILL)
        node.wait(10)
    finally:
        node.stop()
    bus = RedisStreamBus(private_valkey.url, namespace="", timeout_s=0.5)
    outbox = Outbox(bus, OutboxOptions(spill_dir=spill_dir, retry_initial_s=0.02))
    outbox.start()
    await eventually(lambda: not outbox.spilling, timeout=20)
    consumer = bus.consumer("check", "c1")
    got, _ = await collect(consumer, 60)
    await consumer.close()
    await outbox.close()
    await bus.close()
    assert sorted({e.data.response_id for e in got}) == list(range(60))  # type: ignore[attr-defined]


def _line_of(n_bytes: int) -> Event:
    data = TurnCompleted(response_id=-1, kind="response", caller_line="x" * n_bytes)
    return make_event(data, call_id="call-big", source="node/test")


async def test_kafka_refuses_an_oversized_message_and_keeps_the_rest_and_its_producer(
    kafka_bootstrap: str, kafka_topic: str
) -> None:
    bus = KafkaBus(kafka_bootstrap, topic=kafka_topic, partitions=1)
    small = _events(2)
    messages = [encode(small[0]), encode(_line_of(1_049_000)), encode(small[1])]
    try:
        await bus.send([encode(e) for e in _events(1, start=100)])
        producer = bus._producer
        with pytest.raises(MessagesRejected) as refused:
            await bus.send(messages)
        assert refused.value.rejected == {1: "too_large"}
        assert bus._producer is producer  # a refusal is not a broken link
        consumer = bus.consumer("check", "c1")
        got, _ = await collect(consumer, 3)
        await consumer.close()
    finally:
        await bus.close()
    assert [e.id for e in got][1:] == [small[0].id, small[1].id]


async def test_an_event_kafka_refuses_is_parked_and_the_next_ones_flow(
    kafka_bootstrap: str, kafka_topic: str, tmp_path: Path
) -> None:
    bus = KafkaBus(kafka_bootstrap, topic=kafka_topic, partitions=1)
    # a limit above Kafka's, so the bus itself refuses it (the default parks it earlier)
    options = OutboxOptions(spill_dir=tmp_path, max_event_bytes=4 << 20, retry_initial_s=0.02)
    outbox = Outbox(bus, options)
    outbox.start()
    before, after = _events(5), _events(20, start=5)
    for event in [*before, _line_of(1_049_000), *after]:
        outbox.put(event)
    await eventually(lambda: outbox.stats.sent == 25, timeout=30)
    consumer = bus.consumer("check", "c1")
    got, _ = await collect(consumer, 25)
    await consumer.close()
    await outbox.close()
    await bus.close()
    assert [e.id for e in got] == [e.id for e in before + after]
    assert outbox.stats.parked_by_reason == {"too_large": 1}
    assert outbox.stats.send_failures == 0
    (parked,) = read_parked(tmp_path)
    assert parked.reason == "too_large"
    assert parked.message.key == b"call-big"


async def test_an_event_above_the_outbox_limit_is_parked_before_the_bus(
    private_valkey: RestartableValkey, tmp_path: Path
) -> None:
    bus = RedisStreamBus(private_valkey.url, namespace="t:", timeout_s=0.5)
    outbox = Outbox(bus, OutboxOptions(spill_dir=tmp_path))
    outbox.start()
    before, after = _events(3), _events(3, start=3)
    for event in [*before, _line_of(600_000), *after]:
        outbox.put(event)
    await eventually(lambda: outbox.stats.sent == 6)
    ids = [e.id for e in (await collect(bus.consumer("check", "c1"), 6))[0]]
    await outbox.close()
    await bus.close()
    assert ids == [e.id for e in before + after]
    assert [p.reason for p in read_parked(tmp_path)] == ["too_large"]
    registry = CollectorRegistry()
    registry.register(OutboxCollector(outbox))
    metrics = generate_latest(registry).decode()
    assert 'switchboard_outbox_parked_total{reason="too_large"} 1.0' in metrics
    assert 'switchboard_outbox_events_total{outcome="parked"} 1.0' in metrics
    assert "switchboard_outbox_spill_corrupt_total 0.0" in metrics


def test_a_spill_file_from_before_checksums_is_replayed_after_the_upgrade(tmp_path: Path) -> None:
    """Records as earlier builds wrote them: ``[u32 length][msgpack]``, 2 already replayed."""
    import msgspec

    legacy = b""
    starts = []
    for event in _events(5):
        starts.append(len(legacy))
        body = msgspec.msgpack.encode(encode(event))
        legacy += struct.pack(">I", len(body)) + body
    (tmp_path / SpillFile.LOG).write_bytes(legacy)
    (tmp_path / SpillFile.OFFSET).write_text(str(starts[2]))
    got, corrupt = _replay_all(tmp_path)
    assert got == [2, 3, 4]
    assert corrupt == 0

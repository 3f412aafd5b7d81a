"""Redis Streams trimming on a real valkey never drops what a group has not acked: with the
cap at 100 entries and one group lagging by 5,000 events, that group still reads all of
them, the stream grows past the cap meanwhile and shrinks once the group has caught up.
An entry a group needed that is gone anyway is counted as a gap, not skipped silently."""

from __future__ import annotations

import pytest

from switchboard.events.buses.redis import RedisStreamBus, trim_floor
from switchboard.events.codec import encode_all
from switchboard.events.types import Event, TurnCompleted, make_event
from tests.fixtures.buses import collect

pytestmark = pytest.mark.integration


def _events(n: int, tag: str = "") -> list[Event]:
    return [
        make_event(
            TurnCompleted(response_id=i, kind="response", reply=f"{tag}{i}"),
            call_id=f"call-{i % 7}",
            source="node/n1",
        )
        for i in range(n)
    ]


def test_the_floor_is_the_slowest_groups_oldest_unacked_entry() -> None:
    assert trim_floor([]) is None
    assert trim_floor([(b"5-3", None)]) == "5-4"  # everything delivered is acked
    assert trim_floor([(b"9-0", b"4-1")]) == "4-1"  # keep the oldest pending
    assert trim_floor([(b"9-0", None), (b"3-7", None), (b"8-0", b"6-0")]) == "3-8"
    assert trim_floor([("0-0", None)]) == "0-1"  # a new group keeps everything


async def test_a_lagging_group_loses_nothing_to_trimming(
    redis_server_url: str, redis_namespace: str
) -> None:
    bus = RedisStreamBus(redis_server_url, namespace=redis_namespace, maxlen=100, entry_max=1)
    fast = bus.consumer("fast", "fast-1")
    slow = bus.consumer("slow", "slow-1")
    try:
        await fast.fetch(timeout_s=0.01)  # both groups exist before the first event
        await slow.fetch(timeout_s=0.01)
        sent = _events(5000)
        for start in range(0, len(sent), 100):
            await bus.send(encode_all(sent[start : start + 100]))
            await collect(fast, 100)  # the fast group keeps up and acks
        assert await slow.lag() == 5000
        assert bus.held_back > 4000  # over the cap, kept for the slow group
        assert await bus.client.xlen(bus.stream) >= 5000

        got, batches = await collect(slow, 5000, timeout_s=60)
        assert sorted(e.id for e in got) == sorted(e.id for e in sent)
        assert sum(b.gaps for b in batches) == 0
        assert await slow.lag() == 0

        await bus.send(encode_all(_events(100, "late-")))  # the next sends trim
        await collect(fast, 100)
        await collect(slow, 100)
        assert await bus.trim() >= 0
        assert await bus.client.xlen(bus.stream) <= 100
        assert bus.held_back == 0
    finally:
        await fast.close()
        await slow.close()
        await bus.close()


async def test_a_pending_entry_that_vanished_is_counted_as_a_gap(
    redis_server_url: str, redis_namespace: str
) -> None:
    bus = RedisStreamBus(redis_server_url, namespace=redis_namespace, entry_max=1)
    member = bus.consumer("archive", "archive-1")
    try:
        await member.fetch(timeout_s=0.01)
        await bus.send(encode_all(_events(3)))
        _, batches = await collect(member, 3, ack=False)
        first_entry = batches[0].token[0]
        await bus.client.xdel(bus.stream, first_entry)
        await member.close()
        member = bus.consumer("archive", "archive-1")  # restarted: re-reads its pending
        got, batches = await collect(member, 2)
        assert len(got) == 2
        assert sum(b.gaps for b in batches) == 1
    finally:
        await member.close()
        await bus.close()


@pytest.mark.parametrize("max_len", [1, 50])
async def test_without_groups_the_stream_is_capped(
    redis_server_url: str, redis_namespace: str, max_len: int
) -> None:
    bus = RedisStreamBus(redis_server_url, namespace=redis_namespace, maxlen=max_len, entry_max=1)
    try:
        for _ in range(5):
            await bus.send(encode_all(_events(60)))
        assert await bus.client.xlen(bus.stream) <= max_len + max(1, max_len // 10)
    finally:
        await bus.close()

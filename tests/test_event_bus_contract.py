"""The contract every ``EventBus`` backend keeps: in-process, Redis Streams and Kafka."""

from __future__ import annotations

from collections import Counter

from switchboard.events.bus import EventBus
from switchboard.events.codec import BusMessage, encode, encode_all
from switchboard.events.types import CallStarted, Event, TurnCompleted, make_event
from tests.fixtures.buses import collect


def _turns(calls: int, turns: int) -> list[Event]:
    return [
        make_event(
            TurnCompleted(response_id=t, kind="response", reply=f"reply {t}"),
            call_id=f"call-{c}",
            source="node/test",
        )
        for t in range(1, turns + 1)
        for c in range(calls)
    ]


async def test_every_event_arrives_once_and_in_order_per_call(bus: EventBus) -> None:
    sent = _turns(calls=6, turns=10)
    await bus.send(encode_all(sent[:25]))
    await bus.send(encode_all(sent[25:]))
    consumer = bus.consumer("archive", "archive-1")
    got, _ = await collect(consumer, len(sent))
    await consumer.close()
    assert sorted(e.id for e in got) == sorted(e.id for e in sent)
    for c in range(6):
        mine = [e.data.response_id for e in got if e.call_id == f"call-{c}"]  # type: ignore[attr-defined]
        assert mine == list(range(1, 11))
    assert got[0] in sent  # decoded to equal structs


async def test_each_group_sees_every_event(bus: EventBus) -> None:
    sent = _turns(calls=3, turns=4)
    await bus.send(encode_all(sent))
    archive = bus.consumer("archive", "a-1")
    analytics = bus.consumer("analytics", "b-1")
    got_a, _ = await collect(archive, len(sent))
    got_b, _ = await collect(analytics, len(sent))
    await archive.close()
    await analytics.close()
    assert {e.id for e in got_a} == {e.id for e in got_b} == {e.id for e in sent}


async def test_batch_not_acked_is_delivered_again_after_a_restart(bus: EventBus) -> None:
    sent = _turns(calls=2, turns=5)
    await bus.send(encode_all(sent))
    first = bus.consumer("archive", "archive-1")
    seen, _ = await collect(first, len(sent), ack=False)
    await first.close()  # "crashed" before its write was durable: nothing acked
    again = bus.consumer("archive", "archive-1")
    redelivered, _ = await collect(again, len(sent))
    await again.close()
    assert {e.id for e in redelivered} == {e.id for e in seen} == {e.id for e in sent}


async def test_acked_events_are_not_delivered_again(bus: EventBus) -> None:
    early = _turns(calls=2, turns=3)
    await bus.send(encode_all(early))
    first = bus.consumer("archive", "archive-1")
    await collect(first, len(early))
    await first.close()
    late = [make_event(CallStarted(node_id="n"), call_id="call-late", source="node/test")]
    await bus.send(encode_all(late))
    second = bus.consumer("archive", "archive-1")
    got, _ = await collect(second, 1)
    await second.close()
    assert [e.id for e in got] == [late[0].id]


async def test_bad_messages_are_skipped_and_consumption_goes_on(bus: EventBus) -> None:
    good = _turns(calls=1, turns=2)
    valid = encode(good[0])
    unknown_version = BusMessage(
        valid.key,
        tuple((k, b"7" if k == "ce_schemaversion" else v) for k, v in valid.headers),
        valid.value,
    )
    await bus.send(
        [
            BusMessage(b"x", (), b"somebody else's message"),
            unknown_version,
            BusMessage(valid.key, valid.headers, b"{broken json"),
            valid,
            encode(good[1]),
        ]
    )
    consumer = bus.consumer("archive", "archive-1")
    skipped: Counter[str] = Counter()
    got, batches = await collect(consumer, 2)
    for batch in batches:
        skipped.update(batch.skipped)
    await consumer.close()
    assert [e.id for e in got] == [e.id for e in good]
    assert skipped == {"foreign": 1, "unknown_type": 1, "malformed": 1}

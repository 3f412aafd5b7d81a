"""Event-path figures: the outbox's cost on the turn path, and each service's throughput.

``python -m switchboard.bench.events [--events N] [--cpu C]``: builds and puts turn
events the way a node does (CPU per turn on the turn path, then the sender's cost per
event to a real valkey), then prefills a Redis stream with ``N`` events and times each
service (a real ``switchboard service ...`` process, pinned to one core) until it has
applied them all; one malformed message in every ``--poison-every`` goes along, so the
dead-letter path is part of the figure. Prints one line per figure. A benchmark, not a
test: run it on quiet cores.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import psutil

from switchboard.agents.base import TurnKind
from switchboard.calls.generation import Generation
from switchboard.calls.publisher import CallEventPublisher
from switchboard.cluster.processes import SWITCHBOARD_ARGV, Child, pin_prefix
from switchboard.cluster.tansu import bootstrap, start_tansu
from switchboard.cluster.valkey import redis_url, start_valkey
from switchboard.events.bus import EventBus
from switchboard.events.buses.kafka import KafkaBus
from switchboard.events.buses.memory import MemoryBus
from switchboard.events.buses.redis import RedisStreamBus
from switchboard.events.codec import BusMessage, encode_all
from switchboard.events.outbox import Outbox, OutboxOptions
from switchboard.events.types import CallEnded, CallStarted, Event, TurnCompleted, make_event
from switchboard.protocol.inbound import Utterance


def turn_path_cost(turns: int = 50_000) -> float:
    """Microseconds of CPU per turn for ``CallEventPublisher.turn_ended`` (build + put)."""
    outbox = Outbox(MemoryBus(), OutboxOptions(capacity=turns + 1))
    publisher = CallEventPublisher(outbox, "bench")
    transcript = [
        Utterance(role="agent", content="Hello."),
        Utterance(role="user", content="What are your hours?"),
    ]
    gens = []
    for i in range(turns):
        gen = Generation(i, TurnKind.RESPONSE, transcript=transcript)
        gen.reply.extend(["We are open ", "nine to five."])
        gen.first_chunk_ns = gen.started_ns + 1000
        gens.append(gen)
    start = time.process_time()
    for gen in gens:
        publisher.turn_ended("call-1", gen, None, gen.started_ns + 5000)
    return (time.process_time() - start) / turns * 1e6


def _events(n: int) -> list[Event]:
    out: list[Event] = []
    call = 0
    while len(out) < n:
        call_id = f"call-{call}"
        out.append(make_event(CallStarted(node_id="n"), call_id=call_id, source="node/n"))
        for t in range(1, 9):
            data = TurnCompleted(
                response_id=t,
                kind="response",
                caller_line="What are your opening hours on Saturday?",
                reply="On Saturdays we are open from nine in the morning until one.",
                ttfb_ms=40.0 + t,
                ttc_ms=180.0,
            )
            out.append(make_event(data, call_id=call_id, source="node/n"))
        out.append(make_event(CallEnded(node_id="n", how="closed"), call_id=call_id, source="n"))
        call += 1
    return out[:n]


async def sender_cost(bus: EventBus, events: list[Event]) -> float:
    """Microseconds of CPU per event for encoding and sending batches of 500."""
    await bus.send(encode_all(events[:10]))  # connect, create the topic
    start = time.process_time()
    for i in range(0, len(events), 500):
        await bus.send(encode_all(events[i : i + 500]))
    cost = (time.process_time() - start) / len(events) * 1e6
    if isinstance(bus, RedisStreamBus):
        await bus.client.delete(bus.stream)
    await bus.close()
    return cost


async def prefill(url: str, namespace: str, events: list[Event], poison_every: int = 0) -> None:
    bus = RedisStreamBus(url, namespace=namespace, maxlen=10 * len(events))
    messages = encode_all(events)
    if poison_every:
        poison = messages[1]  # a turn whose value no longer decodes
        bad = BusMessage(poison.key, poison.headers, b'{"response_id":9223372036854775808}')
        for at in range(len(messages) - poison_every, 0, -poison_every):
            messages.insert(at, bad)
    for i in range(0, len(messages), 500):
        await bus.send(messages[i : i + 500])
    await bus.close()


def service_rate(
    kind: str, url: str, events: int, work: Path, cpu: int | None, poison_every: int = 0
) -> tuple[float, float]:
    """(events/s wall, events per CPU-second) for one service draining a prefilled stream."""
    namespace = f"bench-{kind}:"
    asyncio.run(prefill(url, namespace, _events(events), poison_every))
    db = work / f"{kind}.db"
    argv = [
        *pin_prefix(cpu),
        *SWITCHBOARD_ARGV,
        "service",
        kind,
        "--bus",
        url,
        "--namespace",
        namespace,
    ]
    argv += ["--db", str(db)]
    if kind == "analytics":
        argv += ["--port", "0"]
    if kind == "escalation":
        rules = work / "rules.yaml"
        rules.write_text(
            "transfer_number: '+1'\nrules: [{name: h, when: asks_for_human, count: 2}]\n"
        )
        argv += ["--redis-url", url, "--rules", str(rules)]
    child = Child(kind, argv, log_path=work / f"{kind}.log")
    try:
        started = time.monotonic()
        proc = psutil.Process(child.pid)
        while not _applied(kind, db) >= events:
            if child.poll() is not None:
                raise child.error("exited")
            if time.monotonic() - started > 600:
                raise child.error("too slow")
            time.sleep(0.05)
        wall = time.monotonic() - started
        times = proc.cpu_times()
        cpu_s = times.user + times.system
    finally:
        child.stop()
    return events / wall, events / cpu_s


def _applied(kind: str, db: Path) -> int:
    import sqlite3

    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as conn:
            if kind == "archive":
                row = conn.execute(
                    "SELECT value FROM archive_counters WHERE name = 'events_applied'"
                ).fetchone()
            elif kind == "analytics":
                row = conn.execute(
                    "SELECT value FROM counters WHERE name = 'events_applied'"
                ).fetchone()
            else:
                row = conn.execute("SELECT COUNT(*) FROM processed_events").fetchone()
    except sqlite3.Error:
        return 0
    return int(row[0]) if row else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--cpu", type=int, default=1)
    parser.add_argument("--services", default="archive,analytics,escalation")
    parser.add_argument("--poison-every", type=int, default=1000)
    args = parser.parse_args()
    print(f"turn path: CallEventPublisher.turn_ended {turn_path_cost():.2f} us CPU per turn")
    work = Path(tempfile.mkdtemp(prefix="switchboard-event-bench-"))
    valkey = start_valkey(log_dir=work)
    try:
        url = redis_url(valkey)
        redis_bus = RedisStreamBus(url, namespace="bench-send:")
        cost = asyncio.run(sender_cost(redis_bus, _events(20_000)))
        print(f"outbox sender, Redis Streams: {cost:.2f} us CPU per event (batches of 500)")
        tansu = start_tansu(log_dir=work)
        try:
            kafka = KafkaBus(bootstrap(tansu), topic="bench")
            cost = asyncio.run(sender_cost(kafka, _events(20_000)))
            print(f"outbox sender, Kafka (tansu): {cost:.2f} us CPU per event (batches of 500)")
        finally:
            tansu.stop()
        for kind in filter(None, args.services.split(",")):
            wall, per_cpu = service_rate(kind, url, args.events, work, args.cpu, args.poison_every)
            print(f"{kind}: {wall:,.0f} events/s wall, {per_cpu:,.0f} events per CPU-second")
    finally:
        valkey.stop()


if __name__ == "__main__":
    main()

"""Poison on a real bus (valkey Redis Streams, tansu Kafka) with the three services as real
processes: a message nested 990 levels deep, one with invalid UTF-8, one with a 2**63
``response_id`` and one with U+0000 in the caller's line, then good events. Every service
stays up and processes the good ones; the three poisons are parked in each service's
dead letters with their reason, counted on its ``/metrics``, listed by
``switchboard service deadletters list`` and replayed (parked again: they are still
poison) by ``replay``; the NUL is archived as U+FFFD (PostgreSQL refuses U+0000)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from typer.testing import CliRunner, Result

from switchboard.cli import app
from switchboard.cluster.processes import Child
from switchboard.config import builtin_example
from switchboard.events.buses import open_bus
from switchboard.events.buses.kafka import KafkaBus
from switchboard.events.codec import BusMessage, encode, encode_all
from switchboard.events.types import (
    CallEnded,
    CallStarted,
    Event,
    RetellWebhook,
    TurnCompleted,
    make_event,
)
from switchboard.services.archive import open_archive
from switchboard.services.archive import queries as q
from switchboard.services.archive.store import ArchiveDb
from tests.fixtures.ports import free_port
from tests.fixtures.services import start_service, until

pytestmark = pytest.mark.system


def _good(calls: int, turns: int) -> list[Event]:
    events = []
    for c in range(calls):
        call_id = f"good-{c}"
        events.append(make_event(CallStarted(node_id="n1"), call_id=call_id, source="node/n1"))
        for t in range(1, turns + 1):
            data = TurnCompleted(
                response_id=t, kind="response", caller_line=f"question {t}", reply=f"answer {t}"
            )
            events.append(make_event(data, call_id=call_id, source="node/n1"))
        ended = CallEnded(node_id="n1", how="closed", turns=turns)
        events.append(make_event(ended, call_id=call_id, source="node/n1"))
    return events


def _poison() -> list[BusMessage]:
    turn = encode(
        make_event(TurnCompleted(response_id=1, kind="response"), call_id="bad", source="n")
    )
    webhook = encode(
        make_event(
            RetellWebhook(event="call_analyzed"),
            call_id="bad",
            source="n",
            type="retell.call_analyzed",
        )
    )
    deep = b'{"event":"call_analyzed","call":{"a":' + b"[" * 990 + b"]" * 990 + b"}}"
    return [
        BusMessage(webhook.key, webhook.headers, deep),
        BusMessage(turn.key, turn.headers, b'{"response_id":2,"kind":"response","reply":"\xff"}'),
        BusMessage(turn.key, turn.headers, b'{"response_id":9223372036854775808,"kind":"x"}'),
    ]


def _nul_turn() -> Event:
    data = TurnCompleted(response_id=7, kind="response", caller_line="a\x00b", reply="ok")
    return make_event(data, call_id="nul-call", source="node/n1")


async def _cli(*args: str) -> Result:
    """The CLI runs its own event loop: keep it off the test's."""
    return await asyncio.to_thread(CliRunner().invoke, app, list(args))


def _bus_url(backend: str, request: pytest.FixtureRequest) -> str:
    if backend == "redis":
        return str(request.getfixturevalue("redis_server_url"))
    topic = request.getfixturevalue("kafka_topic")
    servers = request.getfixturevalue("kafka_bootstrap")
    return f"kafka://{servers}?topic={topic}&partitions=4&session_timeout_ms=2000"


async def _metrics(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with httpx.AsyncClient(trust_env=False, timeout=5) as http:
        text = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def _metric(port: int, name: str, **labels: str) -> float:
    """The sum of the matching samples; -1 when the service does not answer or has none."""
    try:
        samples = await _metrics(port)
    except httpx.HTTPError:
        return -1.0
    matched = [
        value
        for (sample, sample_labels), value in samples.items()
        if sample == name and set(labels.items()) <= set(sample_labels)
    ]
    return sum(matched) if matched else -1.0  # absent is not zero


@pytest.mark.parametrize(("backend", "store"), [("redis", "postgres"), ("kafka", "sqlite")])
async def test_poison_on_the_bus_is_parked_and_every_service_goes_on(
    backend: str, store: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = _bus_url(backend, request)
    namespace = request.getfixturevalue("redis_namespace")
    redis_url = str(request.getfixturevalue("redis_server_url"))
    archive_url = (
        request.getfixturevalue("postgres_url") if store == "postgres" else str(tmp_path / "a.db")
    )
    bus = open_bus(url, namespace=namespace)
    if isinstance(bus, KafkaBus):
        await bus.ensure_topic()
    ports = {name: free_port() for name in ("archive", "analytics", "escalation")}
    stores = {name: tmp_path / f"{name}-dead.db" for name in ports}
    common = ["--bus", url, "--namespace", namespace]
    argv = {
        "archive": [*common, "--db", archive_url, "--metrics-port", str(ports["archive"])],
        "analytics": [
            *(*common, "--db", str(tmp_path / "analytics.db")),
            *("--port", str(ports["analytics"])),
        ],
        "escalation": [
            *(*common, "--db", str(tmp_path / "escalation.db"), "--redis-url", redis_url),
            *("--rules", str(builtin_example("escalation.yaml"))),
            *("--metrics-port", str(ports["escalation"])),
        ],
    }
    children: dict[str, Child] = {
        name: start_service(name, [*args, "--dead-letters", str(stores[name])], tmp_path)
        for name, args in argv.items()
    }
    archive: ArchiveDb | None = None
    try:
        good = [*_good(calls=5, turns=4), _nul_turn()]
        await bus.send(_poison())
        await bus.send(encode_all(good))

        for name, port in ports.items():
            child = children[name]

            async def handled_all(port: int = port, name: str = name) -> bool:
                value = await _metric(port, "switchboard_service_events_handled_total", group=name)
                return value == len(good)

            await until(handled_all, timeout=120, child=child)

            async def parked_all(port: int = port, name: str = name) -> bool:
                value = await _metric(
                    port, "switchboard_service_dead_letters_parked_total", group=name
                )
                return value == 3

            await until(parked_all, timeout=60, child=child)
            stored = await _metric(
                port, "switchboard_service_dead_letters", group=name, state="parked"
            )
            assert stored == 3

            async def caught_up(port: int = port, name: str = name) -> bool:
                return await _metric(port, "switchboard_service_bus_lag", group=name) == 0

            await until(caught_up, timeout=60, child=child)
            assert child.poll() is None

        archive = await open_archive(archive_url)
        stats = await q.stats(archive)
        assert stats.events_applied == len(good)
        _, turns = await q.show_call(archive, "nul-call")
        assert [t.caller_line for t in turns] == ["a\ufffdb"]

        for name, path in stores.items():
            listed = await _cli("service", "deadletters", "list", "--store", str(path))
            assert listed.exit_code == 0, listed.output
            assert listed.output.count("malformed") == 3
            as_json = await _cli("service", "deadletters", "list", "--store", str(path), "--json")
            letters = json.loads(as_json.output)
            assert len(letters) == 3, (name, letters)
            assert {d["reason"] for d in letters} == {"malformed"}
            assert {d["group"] for d in letters} == {name}
            assert all(d["position"] and d["source"] for d in letters)
            details = " ".join(d["detail"] for d in letters)
            assert "UnicodeDecodeError" in details
            assert "9223372036854775807" in details
            # msgspec's own limit or ours, depending on the stack left
            assert "deeper than" in details or "RecursionError" in details

            replay = await _cli("service", "deadletters", "replay", "--store", str(path), "--all")
            assert replay.exit_code == 0, replay.output
            assert replay.output.startswith("3 dead letter(s) marked")

        for name, path in stores.items():

            async def parked_twice(path: Path = path) -> bool:
                from switchboard.services.dead_letters import DeadLetterStore

                letters = await DeadLetterStore.open(path)
                try:
                    listed = await letters.list()
                finally:
                    await letters.close()
                return all(d.state == "parked" and d.attempts == 2 for d in listed)

            await until(parked_twice, timeout=60, child=children[name])
            assert children[name].poll() is None
    finally:
        for child in children.values():
            child.stop()
        if archive is not None:
            await archive.close()
        await bus.close()

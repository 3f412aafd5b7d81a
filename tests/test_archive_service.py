"""``switchboard service archive`` as a real process on a real bus: every event archived
once, across a ``kill -9`` mid-stream; and the ``switchboard archive`` commands."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from switchboard.cli import app
from switchboard.events.buses import open_bus
from switchboard.events.buses.kafka import KafkaBus
from switchboard.events.codec import BusMessage, encode_all
from switchboard.events.types import CallEnded, CallStarted, Event, TurnCompleted, make_event
from switchboard.services.archive import open_archive
from switchboard.services.archive import queries as q
from tests.fixtures.services import start_service, until


def _calls(calls: int, turns: int, tag: str = "") -> list[Event]:
    events = []
    for c in range(calls):
        call_id = f"call-{tag}{c}"
        events.append(make_event(CallStarted(node_id="n1"), call_id=call_id, source="node/n1"))
        for t in range(1, turns + 1):
            data = TurnCompleted(
                response_id=t, kind="response", caller_line=f"question {t}", reply=f"answer {t}"
            )
            events.append(make_event(data, call_id=call_id, source="node/n1"))
        ended = CallEnded(node_id="n1", how="closed", turns=turns)
        events.append(make_event(ended, call_id=call_id, source="node/n1"))
    return events


def _bus_url(backend: str, request: pytest.FixtureRequest) -> str:
    if backend == "redis":
        return str(request.getfixturevalue("redis_server_url")) + "?claim_idle_ms=500"
    topic = request.getfixturevalue("kafka_topic")
    servers = request.getfixturevalue("kafka_bootstrap")
    return f"kafka://{servers}?topic={topic}&partitions=4&session_timeout_ms=2000"


@pytest.mark.parametrize(
    ("backend", "store"), [("redis", "sqlite"), ("kafka", "sqlite"), ("redis", "postgres")]
)
@pytest.mark.system
async def test_kill_9_mid_stream_loses_nothing_and_doubles_nothing(
    backend: str, store: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url = _bus_url(backend, request)
    namespace = request.getfixturevalue("redis_namespace")
    db_path = tmp_path / "archive.db"
    db_url = str(db_path) if store == "sqlite" else request.getfixturevalue("postgres_url")
    bus = open_bus(url, namespace=namespace)
    if isinstance(bus, KafkaBus):
        await bus.ensure_topic()
    args = ["--bus", url, "--db", db_url, "--namespace", namespace]
    args += ["--dead-letters", str(tmp_path / "dead-letters.db")]  # not the working dir
    service = start_service("archive", args, tmp_path)
    archive = None
    try:
        events = _calls(calls=60, turns=10)  # 720 events, 600 turns
        for start in range(0, len(events), 50):
            await bus.send(encode_all(events[start : start + 50]))
        # A foreign message mid-stream: skipped, the service keeps going.
        await bus.send([BusMessage(b"x", (), b"not an event")])

        async def some_applied() -> bool:
            if store == "sqlite" and not db_path.exists():
                return False
            nonlocal archive
            try:
                archive = archive or await open_archive(db_url)
                return (await q.stats(archive)).events_applied > 0
            except Exception:  # the service may still be creating the schema
                return False

        await until(some_applied, child=service)
        os.kill(service.pid, signal.SIGKILL)
        service.wait(10)
        more = _calls(calls=20, turns=10, tag="late-")
        await bus.send(encode_all(more))
        service = start_service("archive", args, tmp_path, tag="-2")

        async def all_applied() -> bool:
            assert archive is not None
            stats = await q.stats(archive)
            return stats.events_applied == len(events) + len(more)

        await until(all_applied, timeout=90, child=service)
        assert archive is not None
        stats = await q.stats(archive)
        assert stats.turns == 800
        assert stats.calls == 80
        # Skipped, never applied; counted again if the kill came between the batch's commit
        # and its ack (a foreign message has no event id to deduplicate its count by).
        assert 1 <= stats.messages_skipped <= 2
        rows = await archive.fetch("SELECT COUNT(*), COUNT(DISTINCT event_id) FROM turns")
        assert rows[0][0] == rows[0][1] == 800
        service.stop()
        assert service.poll() is not None
    finally:
        service.stop()
        if archive is not None:
            await archive.close()
        await bus.close()


def test_archive_commands_read_what_the_service_wrote(tmp_path: Path) -> None:
    db_path = tmp_path / "a.db"

    async def fill() -> None:
        archive = await open_archive(str(db_path))
        await archive.apply(_calls(calls=2, turns=3))
        await archive.close()

    asyncio.run(fill())
    runner = CliRunner()
    db = ["--db", str(db_path)]

    result = runner.invoke(app, ["archive", "stats", "--json", *db])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "calls": 2,
        "turns": 6,
        "superseded_turns": 0,
        "events_applied": 10,
        "duplicates_dropped": 0,
        "messages_skipped": 0,
    }
    listing = runner.invoke(app, ["archive", "list", *db])
    assert "call-0" in listing.output
    assert "call-1" in listing.output
    shown = runner.invoke(app, ["archive", "show", "call-1", *db])
    assert "caller: question 2" in shown.output
    assert "agent:  answer 2" in shown.output
    found = runner.invoke(app, ["archive", "search", "ANSWER 3", *db])
    assert found.output.count("answer 3") == 2
    top = runner.invoke(app, ["archive", "questions", "--json", *db])
    assert json.loads(top.output)[0] == {"question": "question 1", "count": 2}
    missing = runner.invoke(app, ["archive", "show", "nope", *db])
    assert missing.exit_code == 1

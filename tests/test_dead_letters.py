"""The consume loop with a real archive (SQLite) on the in-process bus: an event the store
refuses is parked alone (the batch bisected) and the others are written; messages that do
not decode are parked whole; a store that is away is waited out, nothing parked; a parked
letter replays once the cause is fixed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest

from switchboard.events.codec import BusMessage, encode, encode_all
from switchboard.events.memory_bus import MemoryBus
from switchboard.events.types import Event, TurnCompleted, make_event
from switchboard.services import archive_queries as q
from switchboard.services.archive import ArchiveWriter
from switchboard.services.archive_sqlite import SqliteArchive
from switchboard.services.dead_letters import PARKED, REPLAYED, DeadLetterStore
from switchboard.services.runner import Runner, classify
from tests.fixtures.conditions import eventually, eventually_async

REFUSE = (
    "CREATE TRIGGER refuse BEFORE INSERT ON turns WHEN NEW.reply = 'refuse me'"
    " BEGIN SELECT RAISE(ABORT, 'refused by policy'); END"
)


def _turns(n: int, call_id: str = "call-1") -> list[Event]:
    return [
        make_event(
            TurnCompleted(response_id=i, kind="response", caller_line=f"q{i}", reply=f"a{i}"),
            call_id=call_id,
            source="node/n1",
        )
        for i in range(n)
    ]


@pytest.fixture
async def archive(tmp_path: Path) -> AsyncIterator[SqliteArchive]:
    db = await SqliteArchive.connect(tmp_path / "archive.db")
    yield db
    await db.close()


@pytest.fixture
async def letters(tmp_path: Path) -> AsyncIterator[DeadLetterStore]:
    store = await DeadLetterStore.open(tmp_path / "dead.db")
    yield store
    await store.close()


async def _running(runner: Runner) -> asyncio.Task[None]:
    return asyncio.create_task(runner.run())


async def _stop(runner: Runner, task: asyncio.Task[None]) -> None:
    runner.stop.set()
    await asyncio.wait_for(task, 30)


async def test_a_refused_event_is_parked_alone_and_the_rest_archived_then_replayed(
    archive: SqliteArchive, letters: DeadLetterStore, tmp_path: Path
) -> None:
    async with aiosqlite.connect(tmp_path / "archive.db") as admin:
        await admin.execute(REFUSE)
        await admin.commit()
    bus = MemoryBus()
    good = _turns(200)
    refused = make_event(
        TurnCompleted(response_id=999, kind="response", caller_line="?", reply="refuse me"),
        call_id="call-1",
        source="node/n1",
    )
    garbage = BusMessage(b"call-1", (), b"not ours")
    await bus.send([*encode_all(good[:100]), encode(refused), garbage, *encode_all(good[100:])])
    consumer = bus.consumer("archive", "archive-1")
    runner = Runner(
        consumer, ArchiveWriter(archive), letters, asyncio.Event(), group="archive", tick_s=0.05
    )
    task = await _running(runner)
    try:
        # The good ones, on both sides of the refused one.
        await eventually_async(lambda: _applied_is(archive, 200), timeout=30)
        await eventually(lambda: sum(runner.stats.parked.values()) == 2, timeout=30)
        await eventually_async(lambda: _lag_is(consumer, 0), timeout=30)
        parked = await letters.list(group="archive")
        assert {(d.reason, d.state) for d in parked} == {
            ("IntegrityError", PARKED),
            ("foreign", PARKED),
        }
        refused_letter = next(d for d in parked if d.reason == "IntegrityError")
        assert refused_letter.message == encode(refused)  # the raw message, whole
        assert "refused by policy" in refused_letter.detail
        assert (refused_letter.source, refused_letter.position) == ("memory", "100")
        assert runner.stats.parked == {"IntegrityError": 1, "foreign": 1}

        # The cause is fixed; the operator asks for a replay.
        async with aiosqlite.connect(tmp_path / "archive.db") as admin:
            await admin.execute("DROP TRIGGER refuse")
            await admin.commit()
        assert await letters.request_replay([refused_letter.id]) == 1
        await eventually_async(lambda: _applied_is(archive, 201), timeout=30)
        await eventually(lambda: runner.stats.replayed == 1, timeout=30)
        states = {d.id: d.state for d in await letters.list(group="archive")}
        assert states[refused_letter.id] == REPLAYED
    finally:
        await _stop(runner, task)
    _, turns = await q.show_call(archive, "call-1")
    assert sorted(t.response_id for t in turns) == [*range(200), 999]


async def test_a_locked_store_is_waited_out_and_nothing_is_parked(
    archive: SqliteArchive, letters: DeadLetterStore, tmp_path: Path
) -> None:
    await archive._db.execute("PRAGMA busy_timeout=50")  # fail fast while locked
    bus = MemoryBus()
    await bus.send(encode_all(_turns(50)))
    consumer = bus.consumer("archive", "archive-1")
    runner = Runner(
        consumer,
        ArchiveWriter(archive),
        letters,
        asyncio.Event(),
        group="archive",
        retry_max_s=0.2,
    )
    async with aiosqlite.connect(tmp_path / "archive.db", isolation_level=None) as other:
        await other.execute("BEGIN EXCLUSIVE")
        task = await _running(runner)
        try:
            await eventually(lambda: runner.stats.transient_retries >= 5, timeout=30)
            assert runner.stats.handled == 0
            assert await letters.list() == []
            assert await consumer.lag() == 0  # fetched ...
            await other.execute("ROLLBACK")
            await eventually_async(lambda: _applied_is(archive, 50), timeout=30)
        finally:
            await _stop(runner, task)
    assert await letters.list() == []
    assert runner.stats.parked == {}


def test_failures_are_told_apart() -> None:
    import sqlite3

    assert classify(OverflowError("Python int too large")) == "deterministic"
    assert classify(UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad")) == "deterministic"
    assert classify(RecursionError()) == "deterministic"
    assert classify(ConnectionRefusedError()) == "transient"
    assert classify(sqlite3.OperationalError("database is locked")) == "transient"
    assert classify(RuntimeError("who knows")) == "unknown"


async def _applied_is(archive: SqliteArchive, n: int) -> bool:
    return (await q.stats(archive)).events_applied == n


async def _lag_is(consumer: object, n: int) -> bool:
    lag = await consumer.lag()  # type: ignore[attr-defined]
    return bool(lag == n)

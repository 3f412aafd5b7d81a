"""The consume loop with a real archive (SQLite, PostgreSQL) on the in-process bus: an
event the store refuses is parked alone (the batch bisected) and the others are written;
messages that do not decode are parked whole; a store that is locked or down is waited
out, nothing parked, nothing acked; a parked letter replays once the cause is fixed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiosqlite
import pytest

from switchboard.events.buses.memory import MemoryBus
from switchboard.events.codec import BusMessage, encode, encode_all
from switchboard.events.types import Event, TurnCompleted, make_event
from switchboard.services.archive import queries as q
from switchboard.services.archive.postgres import PostgresArchive
from switchboard.services.archive.service import ArchiveWriter
from switchboard.services.archive.sqlite import SqliteArchive
from switchboard.services.dead_letters import PARKED, REPLAYED, DeadLetterStore
from switchboard.services.runner import Runner, classify
from tests.fixtures.conditions import eventually, eventually_async

REFUSE = (
    "CREATE TRIGGER refuse BEFORE INSERT ON turns WHEN NEW.reply = 'refuse me'"
    " BEGIN SELECT RAISE(ABORT, 'refused by policy'); END"
)


def _turns(n: int, call_id: str = "call-1") -> list[Event]:
    """``n`` turns of one call (a distinct ``call_id`` per batch keeps them apart)."""
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


class _Link:
    """A PostgreSQL socket in front of the real one that can go away and come back: a
    database that is down (connections reset, then refused) and restarted."""

    def __init__(self, target: Path, directory: Path) -> None:
        self.target = target
        self.path = directory / target.name
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self.path.unlink(missing_ok=True)
        self._server = await asyncio.start_unix_server(self._accept, self.path)

    async def down(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        self.path.unlink(missing_ok=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_unix_connection(self.target)
        self._writers.update((writer, up_writer))
        await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.transport.abort()


async def test_postgres_down_is_retried_without_acking_and_never_parked(
    postgres_url: str, letters: DeadLetterStore, tmp_path: Path
) -> None:
    parts = urlsplit(postgres_url)
    socket_dir = Path(parse_qs(parts.query)["host"][0])
    link = _Link(socket_dir / ".s.PGSQL.5432", tmp_path)
    await link.up()
    via_link = parts._replace(query=f"host={tmp_path}").geturl()
    archive = await PostgresArchive.connect(via_link)
    bus = MemoryBus()
    consumer = bus.consumer("archive", "archive-1")
    runner = Runner(
        consumer,
        ArchiveWriter(archive),
        letters,
        asyncio.Event(),
        group="archive",
        retry_max_s=0.2,
    )
    task = await _running(runner)
    try:
        await bus.send(encode_all(_turns(20, "before")))
        await eventually(lambda: runner.stats.handled == 20, timeout=30)

        await link.down()  # the database goes away: connections reset, then refused
        await bus.send(encode_all(_turns(30, "during")))
        await eventually(lambda: runner.stats.transient_retries >= 5, timeout=60)
        assert runner.stats.handled == 20
        assert await letters.list() == []

        await link.up()  # and comes back
        await eventually(lambda: runner.stats.handled == 50, timeout=60)
    finally:
        await _stop(runner, task)
        await archive.close()
        await link.down()
    assert await letters.list() == []
    assert runner.stats.parked == {}
    check = await PostgresArchive.connect(postgres_url)
    try:
        assert (await q.stats(check)).events_applied == 50
    finally:
        await check.close()

"""The archive on SQLite (``aiosqlite``): the default, one file, no server.

WAL journal with ``synchronous=FULL``: a batch is on disk when its transaction commits,
so acking it afterwards is safe even against a power cut (one fsync per batch, not per
event). One writer at a time (``BEGIN IMMEDIATE``); readers (the CLI, the dashboard)
never block it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiosqlite

from switchboard.events.types import Event
from switchboard.services.archive import sql as sql
from switchboard.services.archive.plan import plan
from switchboard.services.archive.store import Applied, counter_rows, statements
from switchboard.services.dedupe import fresh_events
from switchboard.services.sqlite_file import open_sqlite

#: SQLite's limit on host parameters is 32766; two per id.
_IDS_PER_STATEMENT = 10_000


async def _add_columns(db: aiosqlite.Connection) -> None:
    """The columns of ``sql.ADDED_COLUMNS`` a database made earlier lacks."""
    for table, column, kind in sql.ADDED_COLUMNS:
        cursor = await db.execute(f"PRAGMA table_info({table})")
        if column not in {row[1] for row in await cursor.fetchall()}:
            try:
                await db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
            except sqlite3.OperationalError as err:  # another process added it first
                if "duplicate column" not in str(err):
                    raise


class SqliteArchive:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    @classmethod
    async def connect(cls, path: Path) -> SqliteArchive:
        return cls(await open_sqlite(path, sql.SCHEMA, migrate=_add_columns))

    async def apply(self, events: Sequence[Event], skipped: int = 0) -> Applied:
        db = self._db
        now = datetime.now(UTC).isoformat()
        ids = list(dict.fromkeys(event.id for event in events))
        await db.execute("BEGIN IMMEDIATE")
        try:
            new_ids: set[str] = set()
            for start in range(0, len(ids), _IDS_PER_STATEMENT):
                chunk = ids[start : start + _IDS_PER_STATEMENT]
                values = ", ".join(["(?, ?)"] * len(chunk))
                args = [x for event_id in chunk for x in (event_id, now)]
                cursor = await db.execute(
                    "INSERT INTO processed_events (event_id, applied_at) VALUES "
                    f"{values} ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
                    args,
                )
                new_ids.update(row[0] for row in await cursor.fetchall())
            fresh = fresh_events(events, new_ids)
            for statement, rows in statements(plan(fresh)):
                if rows:
                    await db.executemany(statement, rows)
            duplicates = len(events) - len(fresh)
            await db.executemany(sql.ADD_COUNTER, counter_rows(len(fresh), duplicates, skipped))
            await db.execute("COMMIT")
        except BaseException:
            await db.execute("ROLLBACK")
            raise
        return Applied(len(fresh), duplicates)

    async def fetch(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        cursor = await self._db.execute(query, args)
        return [tuple(row) for row in await cursor.fetchall()]

    async def close(self) -> None:
        await self._db.close()

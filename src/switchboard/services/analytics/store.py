"""Analytics' durable side: counters, live calls and processed event ids in one SQLite
file, updated in one transaction per batch (so a redelivered batch adds nothing)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import aiosqlite

from switchboard.events.types import Event
from switchboard.services.analytics.model import Delta, cap_families, fold
from switchboard.services.sqlite_file import open_sqlite

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS processed_events (event_id TEXT PRIMARY KEY)",
    "CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS live_calls (call_id TEXT PRIMARY KEY)",
)
_ADD = (
    "INSERT INTO counters (name, value) VALUES (?, ?)"
    " ON CONFLICT (name) DO UPDATE SET value = counters.value + excluded.value"
)


class AnalyticsStore:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db
        self.counters: Counter[str] = Counter()
        self.live: set[str] = set()

    @classmethod
    async def open(cls, path: Path) -> AnalyticsStore:
        db = await open_sqlite(path, _SCHEMA)
        store = cls(db)
        async with db.execute("SELECT name, value FROM counters") as cursor:
            store.counters.update({name: value async for name, value in cursor})
        async with db.execute("SELECT call_id FROM live_calls") as cursor:
            store.live.update([row[0] async for row in cursor])
        return store

    async def apply(self, events: Sequence[Event], skipped: int = 0) -> list[Event]:
        """Fold the new events in; return them (the duplicates are dropped and counted)."""
        db = self._db
        ids = list(dict.fromkeys(e.id for e in events))
        await db.execute("BEGIN IMMEDIATE")
        try:
            new: set[str] = set()
            for start in range(0, len(ids), 20_000):
                chunk = ids[start : start + 20_000]
                cursor = await db.execute(
                    "INSERT INTO processed_events (event_id) VALUES "
                    + ", ".join(["(?)"] * len(chunk))
                    + " ON CONFLICT DO NOTHING RETURNING event_id",
                    chunk,
                )
                new.update(row[0] for row in await cursor.fetchall())
            fresh = []
            for event in events:
                if event.id in new:
                    new.discard(event.id)
                    fresh.append(event)
            delta = fold(fresh)
            delta.counters = cap_families(delta.counters, self.counters)
            delta.counters["events_applied"] += len(fresh)
            delta.counters["duplicates_dropped"] += len(events) - len(fresh)
            delta.counters["messages_skipped"] += skipped
            await db.executemany(_ADD, [(k, v) for k, v in delta.counters.items() if v])
            await self._apply_live(delta)
            await db.execute("COMMIT")
        except BaseException:
            await db.execute("ROLLBACK")
            raise
        self.counters.update(delta.counters)
        self.live.update(delta.live_added)
        self.live.difference_update(delta.live_removed)
        return fresh

    async def _apply_live(self, delta: Delta) -> None:
        if delta.live_added:
            await self._db.executemany(
                "INSERT INTO live_calls (call_id) VALUES (?) ON CONFLICT DO NOTHING",
                [(c,) for c in delta.live_added],
            )
        if delta.live_removed:
            await self._db.executemany(
                "DELETE FROM live_calls WHERE call_id = ?", [(c,) for c in delta.live_removed]
            )

    async def close(self) -> None:
        await self._db.close()

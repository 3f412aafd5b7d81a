"""The archive on PostgreSQL (``asyncpg``), for many nodes and long retention.

Same schema and statements as SQLite (``archive.sql``), same transaction: processed ids,
rows and counters commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from switchboard.events.types import Event
from switchboard.services.archive import sql as sql
from switchboard.services.archive.plan import plan
from switchboard.services.archive.store import Applied, counter_rows, statements
from switchboard.services.dedupe import fresh_events

_MARK_PROCESSED = (
    "INSERT INTO processed_events (event_id, applied_at) SELECT unnest($1::text[]), $2"
    " ON CONFLICT (event_id) DO NOTHING RETURNING event_id"
)


class PostgresArchive:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @classmethod
    async def connect(cls, url: str) -> PostgresArchive:
        pool = await asyncpg.create_pool(url, min_size=1, max_size=4)
        async with pool.acquire() as conn:
            # Two services starting at once would race on CREATE TABLE IF NOT EXISTS.
            await conn.execute("SELECT pg_advisory_lock(727274)")
            try:
                for statement in (*sql.SCHEMA, *sql.POSTGRES_MIGRATIONS):
                    await conn.execute(statement)
                for table, column, kind in sql.ADDED_COLUMNS:
                    await conn.execute(
                        f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {kind}"
                    )
            finally:
                await conn.execute("SELECT pg_advisory_unlock(727274)")
        return cls(pool)

    async def apply(self, events: Sequence[Event], skipped: int = 0) -> Applied:
        now = datetime.now(UTC).isoformat()
        ids = list(dict.fromkeys(event.id for event in events))
        async with self._pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(_MARK_PROCESSED, ids, now)
            fresh = fresh_events(events, {row[0] for row in rows})
            for statement, values in statements(plan(fresh)):
                if values:
                    await conn.executemany(sql.numbered(statement), values)
            duplicates = len(events) - len(fresh)
            await conn.executemany(
                sql.numbered(sql.ADD_COUNTER), counter_rows(len(fresh), duplicates, skipped)
            )
        return Applied(len(fresh), duplicates)

    async def fetch(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        async with self._pool.acquire() as conn:
            return [tuple(row) for row in await conn.fetch(sql.numbered(query), *args)]

    async def close(self) -> None:
        await self._pool.close()

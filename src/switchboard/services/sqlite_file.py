"""The services' SQLite files, opened one way: WAL, full sync, a busy timeout, the schema.

One opener so that a failure on the way (a path that is not a database, a full disk) closes
the connection: aiosqlite's worker thread is not a daemon, and an unclosed connection keeps
the process alive after the error, a service that neither runs nor exits.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import aiosqlite


async def open_sqlite(
    path: Path,
    schema: Sequence[str],
    *,
    busy_timeout_ms: int = 10_000,
    migrate: Callable[[aiosqlite.Connection], Awaitable[None]] | None = None,
) -> aiosqlite.Connection:
    """A connection to ``path`` (created with its parents) with ``schema`` applied and then
    ``migrate``; closed again if anything on the way fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = await aiosqlite.connect(path, isolation_level=None)
    try:
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=FULL")
        await db.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        for statement in schema:
            await db.execute(statement)
        if migrate is not None:
            await migrate(db)
    except BaseException:
        await db.close()
        raise
    return db

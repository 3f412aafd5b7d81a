"""Dead letters: the messages a service can never process, parked whole, listable, replayable.

A message is parked when it fails deterministically: it does not decode (foreign, unknown
type, malformed, too large) or the service's own store refuses it (``OverflowError``,
``DataError``...). The raw message (key, headers, value) is kept with where it was on the
bus (topic or stream, and ``partition/offset`` or ``entry-id/index``) and why, so nothing
is lost and the rest of the stream flows on.

One SQLite file per service (``--dead-letters``), separate from the service's own state
so it works the same whatever the service stores in. ``(grp, source, position)`` is
unique: a batch redelivered after a crash between parking and acking parks nothing twice.

Replay is a request, not an action: ``switchboard service deadletters replay`` marks
letters ``replay``; the running service picks them up between batches and feeds them to
its handler again (decoded by its current build: the way out after an upgrade that knows
a new event type, or a fix). One that works becomes ``replayed``; one that fails again is
parked again with the new reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite
import msgspec

from switchboard.events.codec import BusMessage, Headers
from switchboard.services.sqlite_file import open_sqlite

PARKED = "parked"
REPLAY = "replay"
REPLAYED = "replayed"

_headers_enc = msgspec.msgpack.Encoder()
_headers_dec = msgspec.msgpack.Decoder(Headers)

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS dead_letters (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        grp TEXT NOT NULL,
        source TEXT NOT NULL,
        position TEXT NOT NULL,
        msg_key BLOB NOT NULL,
        headers BLOB NOT NULL,
        value BLOB NOT NULL,
        reason TEXT NOT NULL,
        detail TEXT NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL,
        parked_at TEXT NOT NULL,
        UNIQUE (grp, source, position))""",
    "CREATE INDEX IF NOT EXISTS dead_letters_by_state ON dead_letters (grp, state)",
)
_COLUMNS = "id, grp, source, position, msg_key, headers, value, reason, detail, state, attempts"


@dataclass(frozen=True, slots=True)
class Letter:
    """What to park: one message, where it was and why it failed."""

    message: BusMessage
    source: str
    position: str
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: int
    group: str
    source: str
    position: str
    message: BusMessage
    reason: str
    detail: str
    state: str
    attempts: int


def _row(row: Sequence[object]) -> DeadLetter:
    id_, group, source, position, key, headers, value, reason, detail, state, attempts = row
    message = BusMessage(bytes(key), _headers_dec.decode(bytes(headers)), bytes(value))  # type: ignore[call-overload]
    return DeadLetter(
        id=int(str(id_)),
        group=str(group),
        source=str(source),
        position=str(position),
        message=message,
        reason=str(reason),
        detail=str(detail),
        state=str(state),
        attempts=int(str(attempts)),
    )


class DeadLetterStore:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    @classmethod
    async def open(cls, path: Path) -> DeadLetterStore:
        return cls(await open_sqlite(path, _SCHEMA))

    async def park(self, group: str, letters: Sequence[Letter]) -> int:
        """Park ``letters`` durably (one transaction); return how many were new."""
        if not letters:
            return 0
        now = datetime.now(UTC).isoformat()
        rows = [
            (
                group,
                letter.source,
                letter.position,
                letter.message.key,
                _headers_enc.encode(letter.message.headers),
                letter.message.value,
                letter.reason,
                letter.detail[:2000],
                PARKED,
                1,
                now,
            )
            for letter in letters
        ]
        before = self._db.total_changes
        await self._db.execute("BEGIN IMMEDIATE")
        try:
            await self._db.executemany(
                "INSERT INTO dead_letters (grp, source, position, msg_key, headers, value,"
                " reason, detail, state, attempts, parked_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (grp, source, position) DO NOTHING",
                rows,
            )
            await self._db.execute("COMMIT")
        except BaseException:
            await self._db.execute("ROLLBACK")
            raise
        return self._db.total_changes - before

    async def list(
        self, *, group: str | None = None, state: str | None = None, limit: int = 100
    ) -> list[DeadLetter]:
        query = f"SELECT {_COLUMNS} FROM dead_letters WHERE 1 = 1"
        args: list[object] = []
        if group is not None:
            query += " AND grp = ?"
            args.append(group)
        if state is not None:
            query += " AND state = ?"
            args.append(state)
        query += " ORDER BY id LIMIT ?"
        args.append(limit)
        async with self._db.execute(query, args) as cursor:
            return [_row(tuple(row)) async for row in cursor]

    async def request_replay(self, ids: Sequence[int] | None = None) -> int:
        """Mark parked letters (all, or those ``ids``) for replay; return how many."""
        before = self._db.total_changes
        if ids is None:
            await self._db.execute(
                "UPDATE dead_letters SET state = ? WHERE state = ?", (REPLAY, PARKED)
            )
        else:
            await self._db.executemany(
                "UPDATE dead_letters SET state = ? WHERE id = ? AND state = ?",
                [(REPLAY, id_, PARKED) for id_ in ids],
            )
        return self._db.total_changes - before

    async def replayed(self, id_: int) -> None:
        await self._db.execute("UPDATE dead_letters SET state = ? WHERE id = ?", (REPLAYED, id_))

    async def park_again(self, id_: int, reason: str, detail: str) -> None:
        await self._db.execute(
            "UPDATE dead_letters SET state = ?, reason = ?, detail = ?, attempts = attempts + 1"
            " WHERE id = ?",
            (PARKED, reason, detail[:2000], id_),
        )

    async def counts(self, group: str | None = None) -> Counter[tuple[str, str]]:
        """Letters by ``(reason, state)``."""
        query = "SELECT reason, state, COUNT(*) FROM dead_letters"
        args: tuple[str, ...] = ()
        if group is not None:
            query += " WHERE grp = ?"
            args = (group,)
        async with self._db.execute(query + " GROUP BY reason, state", args) as cursor:
            return Counter({(str(r), str(s)): int(n) async for r, s, n in cursor})

    async def close(self) -> None:
        await self._db.close()


def default_path(state_db: str | Path | None, group: str) -> Path:
    """Beside the service's own SQLite file, or in the working directory."""
    if state_db is not None and "://" not in str(state_db):
        path = Path(state_db)
        return path.with_name(f"{path.stem}-dead-letters.db")
    return Path(f"switchboard-{group}-dead-letters.db")

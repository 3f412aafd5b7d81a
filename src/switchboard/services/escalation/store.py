"""The escalation service's own state (SQLite): processed event ids, per-call tracks and
one row per decision.

A decision row goes ``pending`` (committed with the batch's tracks and event ids, before
anything is done) -> ``done`` or ``failed`` (with the id of the ``call.escalated`` event
that reports it) -> published (once the bus took that event). Whatever a crash
interrupts is found again here: pending rows are carried out, unpublished rows are
published, both with the same ids as the first time.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite
import msgspec

from switchboard.events.types import Event
from switchboard.services.dedupe import fresh_events
from switchboard.services.escalation.rules import CallTrack, Decision, RulesFile, observe
from switchboard.services.sqlite_file import open_sqlite

_track_enc = msgspec.json.Encoder()
_track_dec = msgspec.json.Decoder(CallTrack)
_decision_dec = msgspec.json.Decoder(Decision)

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS processed_events (event_id TEXT PRIMARY KEY)",
    "CREATE TABLE IF NOT EXISTS tracks (call_id TEXT PRIMARY KEY, track TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS escalations (
        call_id TEXT PRIMARY KEY, rule TEXT NOT NULL, action TEXT NOT NULL,
        decision TEXT NOT NULL, status TEXT NOT NULL, detail TEXT, at TEXT NOT NULL,
        event_id TEXT, published INTEGER NOT NULL DEFAULT 0)""",
)
#: Columns added since the first release, for databases created before them.
_ADDED_COLUMNS = {"event_id": "TEXT", "published": "INTEGER NOT NULL DEFAULT 0"}


class Pending(msgspec.Struct, frozen=True):
    decision: Decision
    decided_at: datetime


class Finished(msgspec.Struct, frozen=True):
    decision: Decision
    status: str
    detail: str
    event_id: str


class EscalationStore:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    @classmethod
    async def open(cls, path: Path) -> EscalationStore:
        return cls(await open_sqlite(path, _SCHEMA, migrate=_add_columns))

    async def decide(
        self,
        rules: RulesFile,
        events: Sequence[Event],
        *,
        stale_after_s: float | None = None,
        now: datetime | None = None,
    ) -> list[Decision]:
        """Fold the batch's new events into their calls' tracks; the decisions made, each
        committed as ``pending``. Turns older than ``stale_after_s`` are skipped."""
        db = self._db
        now = now or datetime.now(UTC)
        ids = list(dict.fromkeys(e.id for e in events))
        await db.execute("BEGIN IMMEDIATE")
        try:
            new: set[str] = set()
            if ids:
                cursor = await db.execute(
                    "INSERT INTO processed_events (event_id) VALUES "
                    + ", ".join(["(?)"] * len(ids))
                    + " ON CONFLICT DO NOTHING RETURNING event_id",
                    ids,
                )
                new = {row[0] for row in await cursor.fetchall()}
            fresh = fresh_events(events, new)
            tracks = await self._tracks({e.call_id for e in fresh})
            decisions = []
            for event in fresh:
                track = tracks.setdefault(event.call_id, CallTrack())
                stale = stale_after_s is not None and _age_s(event, now) > stale_after_s
                decision = observe(rules, track, event, stale=stale)
                if decision is not None:
                    decisions.append(decision)
            await db.executemany(
                "INSERT INTO tracks (call_id, track) VALUES (?, ?) ON CONFLICT (call_id)"
                " DO UPDATE SET track = excluded.track",
                [(call_id, _track_enc.encode(t).decode()) for call_id, t in tracks.items()],
            )
            kept = []
            for d in decisions:
                cursor = await db.execute(
                    "INSERT INTO escalations (call_id, rule, action, decision, status, at)"
                    " VALUES (?, ?, ?, ?, 'pending', ?) ON CONFLICT (call_id) DO NOTHING",
                    (d.call_id, d.rule, d.action, _track_enc.encode(d).decode(), now.isoformat()),
                )
                if cursor.rowcount == 1:
                    kept.append(d)
            await db.execute("COMMIT")
        except BaseException:
            await db.execute("ROLLBACK")
            raise
        return kept

    async def _tracks(self, call_ids: set[str]) -> dict[str, CallTrack]:
        if not call_ids:
            return {}
        ordered = sorted(call_ids)
        cursor = await self._db.execute(
            f"SELECT call_id, track FROM tracks WHERE call_id IN ({', '.join('?' * len(ordered))})",
            ordered,
        )
        return {row[0]: _track_dec.decode(row[1]) for row in await cursor.fetchall()}

    async def pending(self) -> list[Pending]:
        cursor = await self._db.execute(
            "SELECT decision, at FROM escalations WHERE status = 'pending' ORDER BY at"
        )
        return [
            Pending(_decision_dec.decode(row[0]), datetime.fromisoformat(row[1]))
            for row in await cursor.fetchall()
        ]

    async def status(self, call_id: str) -> str | None:
        cursor = await self._db.execute(
            "SELECT status FROM escalations WHERE call_id = ?", (call_id,)
        )
        row = await cursor.fetchone()
        return None if row is None else str(row[0])

    async def finish(self, decision: Decision, status: str, detail: str, event_id: str) -> None:
        await self._db.execute(
            "UPDATE escalations SET status = ?, detail = ?, event_id = ? WHERE call_id = ?",
            (status, detail, event_id, decision.call_id),
        )

    async def unpublished(self) -> list[Finished]:
        cursor = await self._db.execute(
            "SELECT decision, status, detail, event_id FROM escalations"
            " WHERE status != 'pending' AND published = 0 AND event_id IS NOT NULL ORDER BY at"
        )
        return [
            Finished(_decision_dec.decode(row[0]), row[1], row[2] or "", row[3])
            for row in await cursor.fetchall()
        ]

    async def mark_published(self, call_id: str) -> None:
        await self._db.execute("UPDATE escalations SET published = 1 WHERE call_id = ?", (call_id,))

    async def rows(self) -> list[tuple[str, str, str, str]]:
        cursor = await self._db.execute(
            "SELECT call_id, rule, action, status FROM escalations ORDER BY at"
        )
        return [tuple(row) for row in await cursor.fetchall()]

    async def close(self) -> None:
        await self._db.close()


def _age_s(event: Event, now: datetime) -> float:
    return (now - event.time).total_seconds()


async def _add_columns(db: aiosqlite.Connection) -> None:
    """Columns added since the first release, for files written before them."""
    cursor = await db.execute("PRAGMA table_info(escalations)")
    have = {row[1] for row in await cursor.fetchall()}
    for name, kind in _ADDED_COLUMNS.items():
        if name not in have:
            await db.execute(f"ALTER TABLE escalations ADD COLUMN {name} {kind}")

"""The archive's store: one protocol (``ArchiveDb``) and what its SQLite and PostgreSQL
backends share.

``apply`` is the whole idempotency story: in one transaction it records the batch's
event ids in ``processed_events`` (``ON CONFLICT DO NOTHING RETURNING``: what comes
back is what was new), writes only the new events' rows, and adds to the counters. A
batch redelivered after a crash finds every id already there and writes nothing but
the ``duplicates`` count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from switchboard.events.types import Event
from switchboard.services.archive import sql
from switchboard.services.archive.plan import Plan, Row


@dataclass(frozen=True, slots=True)
class Applied:
    applied: int
    duplicates: int


def statements(p: Plan) -> list[tuple[str, list[Row]]]:
    return [
        (sql.INSERT_TURN, p.turns),
        (sql.UPSERT_STARTED, p.started),
        (sql.UPSERT_ENDED, p.ended),
        (sql.UPSERT_RETELL_ENDED, p.retell_ended),
        (sql.UPSERT_ANALYZED, p.analyzed),
        (sql.UPSERT_ESCALATED, p.escalated),
    ]


def counter_rows(applied: int, duplicates: int, skipped: int) -> list[Row]:
    rows: list[Row] = [("events_applied", applied), ("duplicates_dropped", duplicates)]
    if skipped:
        rows.append(("messages_skipped", skipped))
    return rows


class ArchiveDb(Protocol):
    async def apply(self, events: Sequence[Event], skipped: int = 0) -> Applied: ...

    async def fetch(self, query: str, *args: Any) -> list[tuple[Any, ...]]:
        """Run a read-only query written with ``?`` placeholders."""
        ...

    async def close(self) -> None: ...

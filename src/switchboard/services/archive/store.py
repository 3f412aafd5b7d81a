"""The archive's store: one protocol, a SQLite and a PostgreSQL backend.

``apply`` is the whole idempotency story: in one transaction it records the batch's
event ids in ``processed_events`` (``ON CONFLICT DO NOTHING RETURNING``: what comes
back is what was new), writes only the new events' rows, and adds to the counters. A
batch redelivered after a crash finds every id already there and writes nothing but
the ``duplicates`` count.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from switchboard.events.types import Event
from switchboard.services.archive import sql as sql
from switchboard.services.archive.plan import Plan, Row, plan

#: Where the archive lives when no ``--db`` is given.
DEFAULT_DB_ENV = "SWITCHBOARD_ARCHIVE_DB"
DEFAULT_DB = "switchboard-archive.db"


def default_db_url() -> str:
    return os.environ.get(DEFAULT_DB_ENV, DEFAULT_DB)


@dataclass(frozen=True, slots=True)
class Applied:
    applied: int
    duplicates: int


def fresh_events(events: Sequence[Event], new_ids: set[str]) -> list[Event]:
    """The events whose ids were new, each once (a batch may repeat an id)."""
    out = []
    for event in events:
        if event.id in new_ids:
            new_ids.discard(event.id)
            out.append(event)
    return out


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


class ArchiveMissing(LookupError):
    """A reader named an archive that does not exist; the message says which and how to
    name the right one. Only the archive service creates an archive."""


def sqlite_path(url: str) -> Path:
    """The file of a SQLite archive URL: a plain path, ``sqlite:///ABS``, ``sqlite://REL``
    or SQLite's own ``file:PATH[?query]`` form (never a directory called ``file:``)."""
    if url.startswith("sqlite://"):
        url = url.removeprefix("sqlite://")
    elif url.startswith("file:"):
        url = url.removeprefix("file:").split("?", 1)[0]
        if url.startswith("//"):  # file://localhost/ABS or file:///ABS
            url = "/" + url[2:].split("/", 1)[1]
    return Path(url)


async def open_archive(url: str | None = None, *, create: bool = True) -> ArchiveDb:
    """``postgresql://...`` -> PostgreSQL; ``sqlite:///PATH``, ``file:PATH`` or a plain path
    -> SQLite. Readers pass ``create=False``: a wrong ``--db`` must be an error, not a new
    empty archive that answers every query with nothing."""
    url = url or default_db_url()
    if url.startswith(("postgres://", "postgresql://")):
        from switchboard.services.archive.postgres import PostgresArchive

        return await PostgresArchive.connect(url)
    from switchboard.services.archive.sqlite import SqliteArchive

    path = sqlite_path(url)
    if not create and not path.is_file():
        raise ArchiveMissing(
            f"no archive at {path} (pass --db PATH or postgresql://..., or set {DEFAULT_DB_ENV})"
        )
    return await SqliteArchive.connect(path)


__all__ = ["Applied", "ArchiveDb", "ArchiveMissing", "open_archive", "plan", "sqlite_path"]

"""The archive service: calls, turns and Retell's analysis kept in SQLite or PostgreSQL,
and read back by the CLI, the dashboard and replay.

``open_archive`` picks the store a URL names; a backend is imported only when named, so a
SQLite archive never loads the PostgreSQL driver.
"""

from __future__ import annotations

import os
from pathlib import Path

from switchboard.services.archive.store import ArchiveDb

#: Where the archive lives when no ``--db`` is given.
DEFAULT_DB_ENV = "SWITCHBOARD_ARCHIVE_DB"
DEFAULT_DB = "switchboard-archive.db"


def default_db_url() -> str:
    return os.environ.get(DEFAULT_DB_ENV, DEFAULT_DB)


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
    from switchboard.extras import require

    url = url or default_db_url()
    if url.startswith(("postgres://", "postgresql://")):
        require("postgres", "asyncpg", "a PostgreSQL archive needs asyncpg")
        from switchboard.services.archive.postgres import PostgresArchive

        return await PostgresArchive.connect(url)
    require("event-driven", "aiosqlite", "a SQLite archive needs aiosqlite")
    from switchboard.services.archive.sqlite import SqliteArchive

    path = sqlite_path(url)
    if not create and not path.is_file():
        raise ArchiveMissing(
            f"no archive at {path} (pass --db PATH or postgresql://..., or set {DEFAULT_DB_ENV})"
        )
    return await SqliteArchive.connect(path)

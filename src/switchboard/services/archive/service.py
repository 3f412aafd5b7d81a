"""The archive service: calls, turns and Retell's analysis into SQLite or PostgreSQL.

``switchboard service archive --bus URL [--db URL]``. Consumer group ``archive``; every
batch goes through ``ArchiveDb.apply`` (dedupe and rows in one transaction) before it
is acked, so a ``kill -9`` at any point loses nothing and doubles nothing.
"""

from __future__ import annotations

from switchboard.events.bus import Batch
from switchboard.log import get_logger
from switchboard.services.archive.store import ArchiveDb

_log = get_logger("switchboard.archive")


class ArchiveWriter:
    def __init__(self, db: ArchiveDb) -> None:
        self.db = db
        self.applied = 0
        self.duplicates = 0

    async def handle(self, batch: Batch) -> None:
        result = await self.db.apply(batch.events, skipped=sum(batch.skipped.values()))
        self.applied += result.applied
        self.duplicates += result.duplicates
        if result.duplicates:
            _log.info("dropped redelivered events", duplicates=result.duplicates)

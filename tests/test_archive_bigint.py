"""``response_id`` is a signed 64-bit value end to end: the archive stores the largest one
on SQLite and PostgreSQL, and a PostgreSQL archive made when the column was ``INTEGER``
(32-bit there) is migrated when a service connects."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from switchboard.events.types import Event, TurnCompleted, make_event
from switchboard.services.archive import open_archive
from switchboard.services.archive import queries as q
from switchboard.services.archive.sql import SCHEMA

LARGEST = 2**63 - 1


def _turn(response_id: int) -> list[Event]:
    data = TurnCompleted(response_id=response_id, kind="response", caller_line="q", reply="a")
    return [make_event(data, call_id="big", source="node/n1")]


async def test_the_largest_response_id_is_archived_on_sqlite(tmp_path: Path) -> None:
    archive = await open_archive(str(tmp_path / "a.db"))
    try:
        await archive.apply(_turn(LARGEST))
        _, turns = await q.show_call(archive, "big")
        assert [t.response_id for t in turns] == [LARGEST]
    finally:
        await archive.close()


async def test_an_integer_column_on_postgres_is_migrated_to_bigint(postgres_url: str) -> None:
    conn = await asyncpg.connect(postgres_url)
    try:
        for statement in SCHEMA:  # the archive as an older build made it
            await conn.execute(statement.replace("response_id BIGINT", "response_id INTEGER"))
        column_type = (
            "SELECT data_type FROM information_schema.columns"
            " WHERE table_name = 'turns' AND column_name = 'response_id'"
        )
        assert await conn.fetchval(column_type) == "integer"
        archive = await open_archive(postgres_url)
        try:
            assert await conn.fetchval(column_type) == "bigint"
            await archive.apply(_turn(LARGEST))
            _, turns = await q.show_call(archive, "big")
            assert [t.response_id for t in turns] == [LARGEST]
        finally:
            await archive.close()
        again = await open_archive(postgres_url)  # a second start changes nothing
        await again.close()
        assert await conn.fetchval(column_type) == "bigint"
    finally:
        await conn.close()

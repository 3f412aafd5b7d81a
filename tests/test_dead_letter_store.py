"""The dead-letter store on its own: parking is idempotent by position (a batch
redelivered after a crash between parking and acking parks nothing twice), replay marks
only parked letters, and the CLI says what it needs."""

from __future__ import annotations

import asyncio
from pathlib import Path

from typer.testing import CliRunner

from switchboard.cli import app
from switchboard.events.codec import BusMessage
from switchboard.services.dead_letters import (
    PARKED,
    REPLAY,
    DeadLetterStore,
    Letter,
    default_path,
)


def _letter(position: str) -> Letter:
    message = BusMessage(b"call-1", (("ce_type", b"x"),), b"\xff not json")
    return Letter(message, "switchboard.events", position, "malformed", "bad bytes")


async def test_parking_twice_at_one_position_keeps_one_letter(tmp_path: Path) -> None:
    store = await DeadLetterStore.open(tmp_path / "dead.db")
    try:
        assert await store.park("archive", [_letter("3/17"), _letter("3/18")]) == 2
        assert await store.park("archive", [_letter("3/17")]) == 0  # the redelivery
        assert await store.park("analytics", [_letter("3/17")]) == 1  # another group's own
        letters = await store.list(group="archive")
        assert [d.position for d in letters] == ["3/17", "3/18"]
        assert letters[0].message == _letter("3/17").message  # whole, raw bytes and headers
        assert await store.counts("archive") == {("malformed", PARKED): 2}

        assert await store.request_replay([letters[0].id]) == 1
        assert await store.request_replay([letters[0].id]) == 0  # already marked
        assert [d.id for d in await store.list(state=REPLAY)] == [letters[0].id]
        await store.park_again(letters[0].id, "malformed", "still bad")
        again = (await store.list(group="archive"))[0]
        assert (again.state, again.attempts, again.detail) == (PARKED, 2, "still bad")
    finally:
        await store.close()


def test_the_cli_lists_and_marks_and_says_what_it_needs(tmp_path: Path) -> None:
    path = tmp_path / "dead.db"

    async def fill() -> None:
        store = await DeadLetterStore.open(path)
        await store.park("escalation", [_letter("0-1/0"), _letter("0-1/1")])
        await store.close()

    asyncio.run(fill())
    cli = CliRunner()
    listed = cli.invoke(app, ["service", "deadletters", "list", "--store", str(path)])
    assert listed.exit_code == 0, listed.output
    assert listed.output.count("malformed: bad bytes") == 2
    bare = cli.invoke(app, ["service", "deadletters", "replay", "--store", str(path)])
    assert bare.exit_code == 2
    assert "give letter ids or --all" in bare.output
    one = cli.invoke(app, ["service", "deadletters", "replay", "--store", str(path), "1"])
    assert one.output.startswith("1 dead letter(s) marked")
    rest = cli.invoke(app, ["service", "deadletters", "replay", "--store", str(path), "--all"])
    assert rest.output.startswith("1 dead letter(s) marked")
    missing = cli.invoke(
        app, ["service", "deadletters", "list", "--store", str(tmp_path / "none.db")]
    )
    assert missing.exit_code == 1
    assert "no store" in missing.output


def test_the_store_lives_beside_the_services_own_file() -> None:
    assert default_path("data/archive.db", "archive") == Path("data/archive-dead-letters.db")
    assert default_path("postgresql://h/db", "archive") == Path(
        "switchboard-archive-dead-letters.db"
    )

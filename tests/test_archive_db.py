"""The archive store, one suite for SQLite and PostgreSQL: rows per event, dedupe by
event id in the same transaction, and the queries the CLI and dashboard use."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from switchboard.events.types import (
    CallEnded,
    CallEscalated,
    CallStarted,
    Event,
    RetellWebhook,
    TurnCompleted,
    make_event,
)
from switchboard.services.archive import open_archive
from switchboard.services.archive import queries as q
from switchboard.services.archive.store import ArchiveDb


@pytest.fixture(params=["sqlite", "postgres"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ArchiveDb]:
    if request.param == "sqlite":
        url = str(tmp_path / "archive.db")
    else:
        url = request.getfixturevalue("postgres_url")
    archive = await open_archive(url)
    yield archive
    await archive.close()


def _call(call_id: str, lines: list[str]) -> list[Event]:
    def ev(data: object, type_: str | None = None) -> Event:
        return make_event(data, call_id=call_id, source="node/n1", type=type_)  # type: ignore[arg-type]

    events = [ev(CallStarted(node_id="n1"))]
    events.append(ev(TurnCompleted(response_id=0, kind="greeting", reply="Hello.")))
    for i, line in enumerate(lines, start=1):
        events.append(
            ev(
                TurnCompleted(
                    response_id=i,
                    kind="response",
                    caller_line=line,
                    reply=f"answer {i}",
                    ttfb_ms=10.0 + i,
                    ttc_ms=50.0 + i,
                )
            )
        )
    events.append(ev(CallEnded(node_id="n1", how="closed", turns=len(lines))))
    return events


async def test_a_call_and_its_turns_are_archived(db: ArchiveDb) -> None:
    events = _call("call-a", ["What are your hours?", "Do you take walk-ins?"])
    result = await db.apply(events)
    assert (result.applied, result.duplicates) == (len(events), 0)
    call, turns = await q.show_call(db, "call-a")
    assert call is not None
    assert call["end_how"] == "closed"
    assert call["node_id"] == "n1"
    assert [t.response_id for t in turns] == [0, 1, 2]
    assert turns[1].caller_line == "What are your hours?"
    assert turns[1].reply == "answer 1"
    assert turns[1].ttfb_ms == pytest.approx(11.0)
    (row,) = await q.list_calls(db)
    assert (row.call_id, row.turns, row.end_how) == ("call-a", 2, "closed")


async def test_redelivered_events_are_dropped_and_counted(db: ArchiveDb) -> None:
    events = _call("call-b", ["one", "two", "three"])
    await db.apply(events[:3])
    again = await db.apply(events)  # a redelivered batch overlapping the first
    assert (again.applied, again.duplicates) == (len(events) - 3, 3)
    twice = await db.apply([events[-1], events[-1]])
    assert (twice.applied, twice.duplicates) == (0, 2)
    stats = await q.stats(db)
    assert stats.turns == 3
    assert stats.events_applied == len(events)
    assert stats.duplicates_dropped == 5


async def test_analysis_escalation_and_skips_land_on_the_call(db: ArchiveDb) -> None:
    await db.apply(_call("call-c", ["let me talk to a person"]))
    analyzed = make_event(
        RetellWebhook(
            event="call_analyzed",
            call={
                "call_id": "call-c",
                "call_analysis": {
                    "user_sentiment": "Negative",
                    "call_successful": False,
                    "call_summary": "Wanted a human.",
                },
            },
        ),
        call_id="call-c",
        source="node/n1",
        type="retell.call_analyzed",
    )
    ended = make_event(
        RetellWebhook(event="call_ended", call={"disconnection_reason": "call_transfer"}),
        call_id="call-c",
        source="node/n1",
        type="retell.call_ended",
    )
    escalated = make_event(
        CallEscalated(rule="asks_for_human", action="transfer", transfer_number="+1555"),
        call_id="call-c",
        source="service/escalation",
    )
    await db.apply([analyzed, ended, escalated], skipped=2)
    call, _ = await q.show_call(db, "call-c")
    assert call is not None
    assert call["sentiment"] == "Negative"
    assert call["successful"] == 0
    assert call["summary"] == "Wanted a human."
    assert call["disconnection_reason"] == "call_transfer"
    assert call["escalated_rule"] == "asks_for_human"
    assert (await q.stats(db)).messages_skipped == 2


async def test_search_and_top_questions(db: ArchiveDb) -> None:
    await db.apply(_call("call-d", ["What are your hours?", "100% sure?"]))
    await db.apply(_call("call-e", ["what are your hours?", "Where are you?"]))
    found = await q.search(db, "HOURS")
    assert sorted(call_id for call_id, _ in found) == ["call-d", "call-e"]
    assert [c for c, _ in await q.search(db, "100%")] == ["call-d"]
    assert await q.search(db, "_") == []
    top = await q.top_questions(db, limit=2)
    assert top[0] == ("what are your hours?", 2)
    assert len(top) == 2
    stats = await q.stats(db)
    assert (stats.calls, stats.turns) == (2, 4)

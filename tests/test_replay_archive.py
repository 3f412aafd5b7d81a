"""The archive as a replay source, and ``archive export`` as Retell call objects."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from switchboard.events.types import CallEnded, CallStarted, Event, TurnCompleted, make_event
from switchboard.replay.export import call_object, parse_since
from switchboard.replay.model import RecordedReply
from switchboard.replay.source import SourceError, load_archive, parse_calls_json
from switchboard.services.archive import open_archive
from switchboard.services.archive import sql as sql

ROOT = Path(__file__).resolve().parent.parent


def _at(event: Event, when: datetime) -> Event:
    return msgspec.structs.replace(event, time=when)


def _call(call_id: str, start: datetime, *, digits: bool = False) -> list[Event]:
    t = start

    def turn(data: TurnCompleted, after_s: float) -> Event:
        nonlocal t
        t += timedelta(seconds=after_s)
        return _at(make_event(data, call_id=call_id, source="node/test"), t)

    return [
        _at(make_event(CallStarted(node_id="n1"), call_id=call_id, source="node/test"), start),
        turn(TurnCompleted(response_id=0, kind="greeting", reply="Hi Dana.", ttc_ms=5), 0.01),
        turn(
            TurnCompleted(
                response_id=1,
                kind="response",
                caller_line="hours?",
                reply="Nine to five.",
                ttfb_ms=2,
                ttc_ms=100,
            ),
            2.1,
        ),
        turn(
            TurnCompleted(
                response_id=2, kind="response", caller_line="more", reply="late", superseded=True
            ),
            1.0,
        ),
        turn(
            TurnCompleted(
                response_id=3,
                kind="response",
                caller_line="more please",
                reply="Pressing one.",
                ttc_ms=500,
                digits="1" if digits else None,
            ),
            1.0,
        ),
        turn(TurnCompleted(response_id=4, kind="reminder", reply="Still there?", ttc_ms=1), 3.0),
        turn(
            TurnCompleted(
                response_id=5,
                kind="response",
                caller_line="bye",
                reply="Goodbye!",
                end_call=True,
                ttc_ms=1,
            ),
            1.0,
        ),
        _at(
            make_event(
                CallEnded(
                    node_id="n1",
                    how="agent_ended",
                    dynamic_variables={"customer_name": "Dana"},
                    metadata={"crm": 7},
                ),
                call_id=call_id,
                source="node/test",
            ),
            t,
        ),
    ]


async def _archive(path: Path | str) -> str:
    now = datetime.now(UTC)
    db = await open_archive(str(path))
    try:
        await db.apply(_call("old", now - timedelta(days=3)))
        await db.apply(_call("new", now - timedelta(hours=1), digits=True))
    finally:
        await db.close()
    return str(path)


def test_tool_calls_and_digits_come_from_transcript_with_tool_calls() -> None:
    def words(text: str, start: float) -> list[dict[str, object]]:
        return [
            {"word": w, "start": start + i * 0.3, "end": start + i * 0.3 + 0.2}
            for i, w in enumerate(text.split())
        ]

    items = [
        {"role": "agent", "content": "Hi.", "words": words("Hi.", 0)},
        {"role": "user", "content": "Book me in", "words": words("Book me in", 2)},
        {"role": "tool_call_invocation", "tool_call_id": "t1", "name": "book", "arguments": "{}"},
        {"role": "tool_call_result", "tool_call_id": "t1", "content": "ok"},
        {
            "role": "agent",
            "content": "Booked.",
            "words": words("Booked.", 4),
            "metadata": {"response_id": 1},
        },
        {
            "role": "agent",
            "content": "Press one.",
            "words": words("Press one.", 5),
            "metadata": {"response_id": 1},
        },
        {"role": "dtmf", "digit": "1"},
    ]
    call = {
        "call_id": "x",
        "call_type": "web_call",
        "access_token": "",
        "agent_id": "a",
        "agent_version": 1,
        "call_status": "ended",
        "transcript_with_tool_calls": items,
    }
    [parsed] = parse_calls_json(json.dumps(call))
    [turn] = parsed.turns  # one response_id: one reply, not a reminder
    assert turn.reply == RecordedReply("Booked. Press one.", digits="1", tool_calls=("book",))
    assert turn.pause_s == pytest.approx(2 - 0.2)
    assert turn.word_gaps_s == pytest.approx((0.3, 0.3))


@pytest.fixture(params=["sqlite", "postgres"])
def archive_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "archive.db")
    url: str = request.getfixturevalue("postgres_url")
    return url


async def test_archived_calls_read_as_recorded_calls(archive_url: str) -> None:
    url = await _archive(archive_url)
    calls = await load_archive(url)
    assert [c.call_id for c in calls] == ["old", "new"]
    new = calls[1]
    assert new.dynamic_variables == {"customer_name": "Dana"}
    assert new.metadata == {"crm": 7}
    assert new.greeting is not None
    assert new.greeting.text == "Hi Dana."
    assert [(t.number, t.caller, t.reply and t.reply.text) for t in new.turns] == [
        (1, "hours?", "Nine to five."),
        (2, "more please", "Pressing one."),  # the superseded answer is not a turn
        (2, None, "Still there?"),  # a reminder: the number of the line it followed
        (3, "bye", "Goodbye!"),
    ]
    assert new.turns[1].reply == RecordedReply("Pressing one.", digits="1", ttfb_ms=None)
    assert new.turns[-1].reply is not None
    assert new.turns[-1].reply.end_call
    # the silence before a turn: previous completion to this request (at - ttc)
    assert new.turns[0].pause_s == pytest.approx(2.1 - 0.1, abs=0.002)
    assert new.turns[1].pause_s == pytest.approx(2.0 - 0.5, abs=0.002)
    assert new.caller_turns == 3
    since = parse_since("1d")
    assert [c.call_id for c in await load_archive(url, since)] == ["new"]


async def test_an_export_reads_back_as_the_same_calls(tmp_path: Path) -> None:
    url = await _archive(tmp_path / "archive.db")
    calls = await load_archive(url)
    objects = [call_object(c) for c in calls]
    assert objects[1]["disconnection_reason"] == "agent_hangup"
    assert {"role": "dtmf", "digit": "1"} in objects[1]["transcript_with_tool_calls"]
    back = parse_calls_json(json.dumps(objects))
    for before, after in zip(calls, back, strict=True):
        assert after.call_id == before.call_id
        assert after.dynamic_variables == before.dynamic_variables
        assert after.metadata == before.metadata
        assert after.start_timestamp == before.start_timestamp
        assert [(t.number, t.caller, t.reply and t.reply.text) for t in after.turns] == [
            (t.number, t.caller, t.reply and t.reply.text) for t in before.turns
        ]
        assert [t.pause_s for t in after.turns] == pytest.approx(
            [t.pause_s for t in before.turns], abs=0.002
        )
        assert [t.reply and (t.reply.end_call, t.reply.digits) for t in after.turns] == [
            t.reply and (t.reply.end_call, t.reply.digits) for t in before.turns
        ]


@pytest.mark.integration
def test_archive_export_cli_writes_calls_since_and_refuses_a_bad_since(tmp_path: Path) -> None:
    import asyncio

    url = asyncio.run(_archive(tmp_path / "archive.db"))
    out = tmp_path / "calls.json"
    run = [sys.executable, "-m", "switchboard", "archive", "export", "--db", url]
    done = subprocess.run(
        [*run, "--since", "2d", "--out", str(out)], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert [c["call_id"] for c in json.loads(out.read_text())] == ["new"]
    bad = subprocess.run(
        [*run, "--since", "last week", "--out", str(out)], capture_output=True, text=True, cwd=ROOT
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0
    assert "--since" in bad.stderr


async def test_an_archive_made_before_these_columns_gains_them(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        for statement in sql.SCHEMA:
            db.execute(statement)
        db.execute(
            "INSERT INTO turns (event_id, call_id, response_id, kind, caller_line, reply,"
            " cache_hit, superseded, at) VALUES ('e', 'c', 1, 'response', 'hi', 'hello', 0, 0,"
            " '2026-01-01T00:00:00+00:00')"
        )
        db.execute("INSERT INTO calls (call_id, end_how) VALUES ('c', 'agent_ended')")
    calls = await load_archive(str(path))  # adds the columns, reads the old rows
    assert calls[0].turns[0].reply == RecordedReply("hello", end_call=True)


async def test_an_unreadable_archive_is_a_source_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.db"
    path.write_bytes(b"SQLite format 3\x00" + b"\x00" * 100)
    with pytest.raises(SourceError, match="archive"):
        await load_archive(str(path))

"""Reading the archive: what ``switchboard archive list|show|search|stats|questions`` and
the dashboard show. Plain functions over ``ArchiveDb.fetch``, same SQL on both stores."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from switchboard.services.archive.store import ArchiveDb


@dataclass(frozen=True, slots=True)
class CallRow:
    call_id: str
    started_at: str | None
    ended_at: str | None
    end_how: str | None
    sentiment: str | None
    escalated_rule: str | None
    turns: int


@dataclass(frozen=True, slots=True)
class TurnRow:
    response_id: int
    kind: str
    caller_line: str
    reply: str
    ttfb_ms: float | None
    ttc_ms: float | None
    cache_hit: bool
    fallback_reason: str | None
    superseded: bool
    at: str


@dataclass(frozen=True, slots=True)
class ArchiveStats:
    calls: int
    turns: int
    superseded_turns: int
    events_applied: int
    duplicates_dropped: int
    messages_skipped: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


_CALLS = (
    "SELECT c.call_id, c.started_at, c.ended_at, c.end_how, c.sentiment, c.escalated_rule,"
    " (SELECT COUNT(*) FROM turns t WHERE t.call_id = c.call_id AND t.superseded = 0"
    " AND t.kind <> 'greeting')"
    " FROM calls c ORDER BY COALESCE(c.started_at, c.ended_at, '') DESC, c.call_id LIMIT ?"
)


async def list_calls(db: ArchiveDb, limit: int = 20) -> list[CallRow]:
    return [
        CallRow(row[0], row[1], row[2], row[3], row[4], row[5], int(row[6]))
        for row in await db.fetch(_CALLS, limit)
    ]


async def show_call(db: ArchiveDb, call_id: str) -> tuple[dict[str, Any] | None, list[TurnRow]]:
    rows = await db.fetch(
        "SELECT call_id, started_at, ended_at, node_id, end_how, disconnection_reason,"
        " sentiment, successful, summary, escalated_rule, escalation_action"
        " FROM calls WHERE call_id = ?",
        call_id,
    )
    names = (
        "call_id",
        "started_at",
        "ended_at",
        "node_id",
        "end_how",
        "disconnection_reason",
        "sentiment",
        "successful",
        "summary",
        "escalated_rule",
        "escalation_action",
    )
    call = dict(zip(names, rows[0], strict=True)) if rows else None
    turns = await db.fetch(
        "SELECT response_id, kind, caller_line, reply, ttfb_ms, ttc_ms, cache_hit,"
        " fallback_reason, superseded, at FROM turns WHERE call_id = ?"
        " ORDER BY response_id, at",
        call_id,
    )
    return call, [_turn(row) for row in turns]


def _turn(row: tuple[Any, ...]) -> TurnRow:
    return TurnRow(
        int(row[0]),
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        bool(row[6]),
        row[7],
        bool(row[8]),
        row[9],
    )


def _like(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


async def search(db: ArchiveDb, text: str, limit: int = 50) -> list[tuple[str, TurnRow]]:
    pattern = _like(text)
    rows = await db.fetch(
        "SELECT call_id, response_id, kind, caller_line, reply, ttfb_ms, ttc_ms, cache_hit,"
        " fallback_reason, superseded, at FROM turns"
        " WHERE lower(caller_line) LIKE ? ESCAPE '\\' OR lower(reply) LIKE ? ESCAPE '\\'"
        " ORDER BY at DESC LIMIT ?",
        pattern,
        pattern,
        limit,
    )
    return [(row[0], _turn(row[1:])) for row in rows]


async def stats(db: ArchiveDb) -> ArchiveStats:
    calls = await db.fetch("SELECT COUNT(*) FROM calls")
    turns = await db.fetch(
        "SELECT COALESCE(SUM(CASE WHEN superseded = 0 THEN 1 ELSE 0 END), 0),"
        " COALESCE(SUM(superseded), 0) FROM turns WHERE kind <> 'greeting'"
    )
    counters = dict(await db.fetch("SELECT name, value FROM archive_counters"))
    return ArchiveStats(
        calls=int(calls[0][0]),
        turns=int(turns[0][0]),
        superseded_turns=int(turns[0][1]),
        events_applied=int(counters.get("events_applied", 0)),
        duplicates_dropped=int(counters.get("duplicates_dropped", 0)),
        messages_skipped=int(counters.get("messages_skipped", 0)),
    )


async def top_questions(db: ArchiveDb, limit: int = 20) -> list[tuple[str, int]]:
    """The caller lines asked most often (answered turns): candidates for cache warming."""
    rows = await db.fetch(
        "SELECT lower(caller_line) AS q, COUNT(*) AS n FROM turns"
        " WHERE kind = 'response' AND superseded = 0 AND caller_line <> ''"
        " GROUP BY lower(caller_line) ORDER BY n DESC, q LIMIT ?",
        limit,
    )
    return [(str(q), int(n)) for q, n in rows]

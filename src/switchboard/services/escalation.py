"""The escalation service: rules over the event stream, acting on live calls.

Per batch, in one SQLite transaction: the new event ids, every touched call's
``CallTrack`` and each decision (an ``escalations`` row, status ``pending``). Then each
decision is carried out through the owning node's command channel (``CallControl``:
one ``agent_interrupt`` that says the handoff line and transfers, or says it alone) or
by POSTing to the supervisor webhook, recorded as ``done``/``failed``, and published as
``call.escalated``. Only then is the batch acked.

At most one escalation per call: the decision is committed before the action, and the
track never decides twice. A ``kill -9`` between commit and action leaves the row
``pending``; the next start carries pending rows out (so across such a crash the action
is at least once, never zero).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import aiosqlite
import httpx
import msgspec

from switchboard.control.client import CallControl, CommandFailed
from switchboard.events.bus import Batch, BusUnavailable, EventBus
from switchboard.events.codec import encode
from switchboard.events.types import CallEscalated, Event, make_event
from switchboard.log import get_logger
from switchboard.services.archive_db import fresh_events
from switchboard.services.escalation_rules import CallTrack, Decision, RulesFile, observe

_log = get_logger("switchboard.escalation")
_track_enc = msgspec.json.Encoder()
_track_dec = msgspec.json.Decoder(CallTrack)
_decision_dec = msgspec.json.Decoder(Decision)

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS processed_events (event_id TEXT PRIMARY KEY)",
    "CREATE TABLE IF NOT EXISTS tracks (call_id TEXT PRIMARY KEY, track TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS escalations (
        call_id TEXT PRIMARY KEY, rule TEXT NOT NULL, action TEXT NOT NULL,
        decision TEXT NOT NULL, status TEXT NOT NULL, detail TEXT, at TEXT NOT NULL)""",
)


class EscalationStore:
    def __init__(self, db: aiosqlite.Connection) -> None:
        self._db = db

    @classmethod
    async def open(cls, path: Path) -> EscalationStore:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = await aiosqlite.connect(path, isolation_level=None)
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute("PRAGMA synchronous=FULL")
        for statement in _SCHEMA:
            await db.execute(statement)
        return cls(db)

    async def decide(self, rules: RulesFile, events: Sequence[Event]) -> list[Decision]:
        db = self._db
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
                decision = observe(rules, track, event)
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
                    (d.call_id, d.rule, d.action, _track_enc.encode(d).decode(), _now()),
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

    async def pending(self) -> list[Decision]:
        cursor = await self._db.execute("SELECT decision FROM escalations WHERE status = 'pending'")
        return [_decision_dec.decode(row[0]) for row in await cursor.fetchall()]

    async def finish(self, decision: Decision, status: str, detail: str) -> None:
        await self._db.execute(
            "UPDATE escalations SET status = ?, detail = ? WHERE call_id = ?",
            (status, detail, decision.call_id),
        )

    async def rows(self) -> list[tuple[str, str, str, str]]:
        cursor = await self._db.execute(
            "SELECT call_id, rule, action, status FROM escalations ORDER BY at"
        )
        return [tuple(row) for row in await cursor.fetchall()]

    async def close(self) -> None:
        await self._db.close()


def _now() -> str:
    return datetime.now(UTC).isoformat()


class Escalation:
    """The batch handler: decide (durably), act, publish, and only then let the runner ack."""

    def __init__(
        self,
        rules: RulesFile,
        store: EscalationStore,
        control: CallControl,
        bus: EventBus,
        http: httpx.AsyncClient,
    ) -> None:
        self.rules = rules
        self.store = store
        self.control = control
        self.bus = bus
        self.http = http
        self.carried_out = 0

    async def resume_pending(self) -> None:
        for decision in await self.store.pending():
            _log.warning("carrying out an escalation left pending", call_id=decision.call_id)
            await self.act(decision)

    async def handle(self, batch: Batch) -> None:
        for decision in await self.store.decide(self.rules, batch.events):
            await self.act(decision)

    async def act(self, decision: Decision) -> None:
        status, detail = "done", decision.detail
        try:
            if decision.action == "transfer":
                assert decision.number
                await self.control.transfer(decision.call_id, decision.number, text=decision.line)
            elif decision.action == "say":
                await self.control.say(decision.call_id, decision.line)
            else:
                await self._alert(decision)
        except (CommandFailed, httpx.HTTPError) as err:
            status, detail = "failed", f"{detail}; {err}"
            _log.warning("escalation not carried out", call_id=decision.call_id, error=str(err))
        await self.store.finish(decision, status, detail)
        self.carried_out += status == "done"
        _log.info("escalated", call_id=decision.call_id, rule=decision.rule, status=status)
        await self._publish(decision, status, detail)

    async def _alert(self, decision: Decision) -> None:
        url = self.rules.supervisor_webhook
        assert url
        body = {"call_id": decision.call_id, "rule": decision.rule, "detail": decision.detail}
        response = await self.http.post(url, json=body)
        response.raise_for_status()

    async def _publish(self, decision: Decision, status: str, detail: str) -> None:
        data = CallEscalated(
            rule=decision.rule,
            action=decision.action if status == "done" else f"{decision.action}_failed",
            detail=detail,
            transfer_number=decision.number,
            trigger_event_id=decision.trigger_event_id,
        )
        message = encode(make_event(data, call_id=decision.call_id, source="service/escalation"))
        for attempt in range(20):
            try:
                await self.bus.send([message])
                return
            except BusUnavailable:
                await asyncio.sleep(min(2.0, 0.05 * 2**attempt))
        _log.error("could not publish call.escalated", call_id=decision.call_id)

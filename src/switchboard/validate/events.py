"""The event-driven profile's two promises: events reach the archive, escalation fires once.

Both read the archive the cluster's archive service writes (``archive_db`` in the state
file of ``switchboard cluster --profile event-driven``), with the archive's own store code.

- **events reach the archive**: a run of simulated calls (no duration, so every call
  finishes its script); once the archive has caught up (or a deadline passed), its turn
  rows for exactly those call ids equal the turns the simulator completed, none twice, and
  it holds every one of those calls.
- **escalation fires once**: one call asks for a person as often as the service's
  ``asks_for_human`` rule wants (its ``--rules`` file, read from the running service's
  command line; twice without one), with a line holding one of the rule's phrases; the
  escalation service must speak one ``agent_interrupt`` with the handoff line and a
  transfer number. The socket stays open until the archive has recorded the call as
  escalated, then a ping round trip flushes what the node sent: exactly one interrupt.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import psutil
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import WebSocketException

from switchboard.protocol.outbound import AgentInterrupt, PingPongReply, Response
from switchboard.services.archive import open_archive
from switchboard.services.archive.store import ArchiveDb
from switchboard.services.escalation.rules import (
    DEFAULT_PHRASES,
    RulesError,
    RulesFile,
    load_rules,
)
from switchboard.sim.frames import ServerFrame, decode_server_frame
from switchboard.sim.options import SimOptions
from switchboard.sim.runner import Simulation
from switchboard.validate.probes import ANSWER_TIMEOUT_S, ProbeError, open_call
from switchboard.validate.report import Check

ARCHIVE = "events reach the archive"
ESCALATION = "escalation fires once"
#: The escalation scenario's line: a rule's phrase (asks_for_human) the receptionist agent
#: has no transfer intent for, so the escalation service and not the agent hands over.
ESCALATION_LINE = "Could I speak with your manager please?"
#: How long the services may take to catch up with what the simulator saw.
CATCH_UP_DEADLINE_S = 60.0


def service_rules(pid: int) -> RulesFile | None:
    """The rules the running escalation service was started with (its ``--rules``)."""
    try:
        argv = psutil.Process(pid).cmdline()
    except psutil.Error:
        return None
    if "--rules" not in argv[:-1]:
        return None
    try:
        return load_rules(Path(argv[argv.index("--rules") + 1]))
    except RulesError:
        return None


def escalation_plan(rules: RulesFile | None, given: str | None) -> tuple[str, int] | str:
    """``(caller line, asks)``, or why no caller line can make the service transfer."""
    if rules is None:
        return given or ESCALATION_LINE, 2
    rule = next(
        (r for r in rules.rules if r.when == "asks_for_human" and r.action == "transfer"), None
    )
    if rule is None:
        return "the escalation rules have no asks_for_human rule that transfers"
    if given:
        return given, rule.count
    phrases = [p.lower() for p in rule.phrases or DEFAULT_PHRASES["asks_for_human"]]
    if any(p in ESCALATION_LINE.lower() for p in phrases):
        return ESCALATION_LINE, rule.count
    return f"Please, {phrases[0]}.", rule.count


@dataclass(frozen=True, slots=True)
class ArchiveCount:
    turns: int
    distinct_turns: int
    calls: int


async def count_archived(db: ArchiveDb, call_ids: list[str]) -> ArchiveCount:
    if not call_ids:
        return ArchiveCount(0, 0, 0)
    marks = ", ".join("?" * len(call_ids))
    rows = await db.fetch(
        "SELECT COUNT(*), COUNT(DISTINCT call_id || ':' || response_id) FROM turns"
        f" WHERE kind <> 'greeting' AND superseded = 0 AND call_id IN ({marks})",
        *call_ids,
    )
    calls = await db.fetch(f"SELECT COUNT(*) FROM calls WHERE call_id IN ({marks})", *call_ids)
    return ArchiveCount(int(rows[0][0]), int(rows[0][1]), int(calls[0][0]))


async def _until(deadline_s: float, condition: Callable[[], Awaitable[bool]]) -> None:
    deadline = time.monotonic() + deadline_s
    while True:
        if await condition() or time.monotonic() > deadline:
            return
        await asyncio.sleep(0.1)


async def archive_check(
    url: str, archive_db: str, calls: int, turns: int, deadline_s: float = CATCH_UP_DEADLINE_S
) -> Check:
    sim = Simulation(
        SimOptions(url=url, calls=calls, turns=turns, think_ms=50.0, seed=7, label=ARCHIVE)
    )
    report = await sim.run()
    db = await open_archive(archive_db)
    try:
        count = ArchiveCount(0, 0, 0)

        async def caught_up() -> bool:
            nonlocal count
            count = await count_archived(db, sim.call_ids)
            return count.turns >= report.turns and count.calls >= report.calls_started

        await _until(deadline_s, caught_up)
    finally:
        await db.close()
    twice = count.turns - count.distinct_turns
    return Check(
        name=ARCHIVE,
        claim="every turn the simulator completed is archived once, for every call it placed",
        passed=report.turns > 0
        and count.turns == report.turns
        and twice == 0
        and count.calls == report.calls_started,
        figures={
            "calls placed": report.calls_started,
            "calls archived": count.calls,
            "turns completed (simulator)": report.turns,
            "turns archived": count.turns,
            "turns archived twice": twice,
        },
        detail="" if report.turns else "the simulator completed no turn",
    )


@dataclass(slots=True)
class EscalationSeen:
    interrupts: list[AgentInterrupt] = field(default_factory=list)
    escalated_rule: str | None = None
    escalation_action: str | None = None
    #: caller asks sent before the first interrupt arrived
    asked: int = 0
    #: the agent answered an ask with a transfer itself: the rule never gets its turn
    agent_transfer: str | None = None


async def _read_until(
    ws: ClientConnection,
    seen: EscalationSeen,
    done: Callable[[ServerFrame], bool],
    timeout_s: float = ANSWER_TIMEOUT_S,
) -> None:
    """Read frames, keeping every interrupt, until ``done(frame)`` holds."""
    async with asyncio.timeout(timeout_s):
        while True:
            frame = decode_server_frame(await ws.recv())
            if isinstance(frame, AgentInterrupt):
                seen.interrupts.append(frame)
            elif isinstance(frame, Response) and frame.transfer_number:
                seen.agent_transfer = frame.transfer_number
            if done(frame):
                return


def _answered(response_id: int) -> Callable[[ServerFrame], bool]:
    def done(frame: ServerFrame) -> bool:
        return (
            isinstance(frame, Response)
            and frame.response_id == response_id
            and frame.content_complete
        )

    return done


async def escalate_once(
    url: str, archive_db: str, line: str, asks: int = 2, deadline_s: float = CATCH_UP_DEADLINE_S
) -> EscalationSeen:
    """``deadline_s`` bounds the wait for the interrupt and for the archive's record."""
    seen = EscalationSeen()
    call = await open_call(url)
    db = await open_archive(archive_db)
    try:
        transcript = [{"role": "agent", "content": call.greeting}]
        for rid in range(1, asks + 1):
            transcript.append({"role": "user", "content": line})
            seen.asked = rid
            request = {"interaction_type": "response_required", "response_id": rid}
            await call.ws.send(msgspec.json.encode({**request, "transcript": transcript}).decode())
            await _read_until(call.ws, seen, _answered(rid))
            if seen.interrupts or seen.agent_transfer:
                break
        if seen.agent_transfer:
            return seen
        if not seen.interrupts:
            await _read_until(
                call.ws, seen, lambda f: isinstance(f, AgentInterrupt), timeout_s=deadline_s
            )

        async def recorded() -> bool:
            rows = await db.fetch(
                "SELECT escalated_rule, escalation_action FROM calls WHERE call_id = ?",
                call.call_id,
            )
            if rows and rows[0][0] is not None:
                seen.escalated_rule, seen.escalation_action = rows[0][0], rows[0][1]
                return True
            return False

        await _until(deadline_s, recorded)
        stamp = int(time.time() * 1000)
        await call.ws.send(
            msgspec.json.encode({"interaction_type": "ping_pong", "timestamp": stamp}).decode()
        )
        await _read_until(
            call.ws, seen, lambda f: isinstance(f, PingPongReply) and f.timestamp == stamp
        )
    finally:
        await db.close()
        await call.ws.close()
    return seen


async def escalation_check(
    url: str,
    archive_db: str,
    line: str = ESCALATION_LINE,
    asks: int = 2,
    deadline_s: float = CATCH_UP_DEADLINE_S,
) -> Check:
    claim = (
        f"a caller asking for a person {asks} times gets exactly one handoff line with one transfer"
    )
    try:
        seen = await escalate_once(url, archive_db, line, asks=asks, deadline_s=deadline_s)
    except (OSError, ProbeError, TimeoutError, WebSocketException) as exc:
        return Check(
            name=ESCALATION,
            claim=claim,
            passed=False,
            detail=f"no escalation reached the call: {exc!r}",
        )
    if seen.agent_transfer:
        return Check(
            name=ESCALATION,
            claim=claim,
            passed=False,
            figures={"caller line": line, "agent transferred at ask": seen.asked},
            detail="the agent transferred the call itself, so the rule never fired: pass"
            " --escalation-line with a phrase of the rule the agent does not answer",
        )
    handoffs = [i for i in seen.interrupts if i.content]
    transfers = [i for i in seen.interrupts if i.transfer_number]
    return Check(
        name=ESCALATION,
        claim=claim,
        passed=len(handoffs) == 1
        and len(transfers) == 1
        and seen.escalated_rule is not None
        and seen.asked == asks,
        figures={
            "caller line": line,
            "asks before the handoff": seen.asked,
            "handoff lines": len(handoffs),
            "transfers": len(transfers),
            "handoff line": handoffs[0].content[:80] if handoffs else "none",
            "transfer number": transfers[0].transfer_number or "" if transfers else "none",
            "archived rule": seen.escalated_rule or "none",
            "archived action": seen.escalation_action or "none",
        },
    )

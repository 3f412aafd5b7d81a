"""The generator: simulated calls with Retell's reconnect rules, recorded for the checker.

The calls are the simulator's own (``sim.caller.SimulatedCall``: connect retries, 1006
reconnects, keepalive, a lost request asked again on the new socket); this module only
decides who says what and when, and turns what happened into a ``History``.

Who calls: ``calls`` calls of ``turns`` random receptionist utterances each, drawn from
the seed, so the control run and the chaos run place the same calls (new call ids, the
same scripts and call objects). Pacing: in a chaos run the starts are spread over the
first 30 % of the duration and each call thinks about 60 % of the duration / ``turns``
between turns, so calls are live while the faults land; the control run plays the same
calls without pauses (a deterministic agent's replies do not depend on timing). Barge-ins
and reminders are off: their replies depend on timing, which would make a comparison
with the control run noisy.

Escalating calls (``escalations``, for event-driven clusters): that many calls, spread
over the run, ask for the manager in their first two turns (``ESCALATION_LINE``), which
the escalation service's default rule answers by handing the call over (a handoff line
and a transfer, sent through the call's owning node). The receptionist itself does not
transfer on "manager", so it is the service, not the agent, that ends these calls.

Hooks for the nemesis: ``hang_up`` ends calls at once (as a caller hanging up: close
1000), ``arm`` sets a tripwire run right after some call's request is written (a kill
mid-turn) or the moment its reply completes (a kill in the save window),
``turns_in_flight`` counts requests not yet complete, ``extra_call`` places one more call
outside the run (the ``oversized`` fault's caller).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from switchboard.chaos.history import CallResult, History, SocketEvent, TurnEvent
from switchboard.protocol.outbound import Response
from switchboard.sim.call_object import call_object, new_id
from switchboard.sim.caller import CALL_TRANSFER, SimulatedCall
from switchboard.sim.conversation import CallerTurn, random_script
from switchboard.sim.ledger import Ledger, Request
from switchboard.sim.metrics import RunMetrics
from switchboard.sim.options import SimOptions

#: Shares of the duration: starts are spread over the first, conversations span the second.
RAMP_SHARE = 0.3
TALK_SHARE = 0.6
#: Every violation is kept (the checker counts second greetings per call from them).
ALL_SAMPLES = 1_000_000
#: What an escalating caller says in its first two turns: the escalation service's
#: default rule (asks_for_human, twice) hands the call over; the agent does not.
ESCALATION_LINE = "Can I talk to your manager?"


class TrackedLedger(Ledger):
    """The simulator's ledger, plus when each request completed, and a hook called with
    ``"request"`` as each request is made and ``"reply"`` as each one completes."""

    __slots__ = ("answered_at", "hook")

    def __init__(
        self,
        call_id: str,
        metrics: RunMetrics,
        stale_grace_s: float,
        hook: Callable[[str], None],
    ) -> None:
        super().__init__(call_id, metrics, stale_grace_s)
        self.answered_at: dict[int, float] = {}
        self.hook = hook

    def request(self, kind: str, now: float) -> Request:
        req = super().request(kind, now)
        self.hook("request")
        return req

    def on_response(self, r: Response, now: float) -> bool:
        woke = super().on_response(r, now)
        rid = r.response_id
        done = 0 < rid <= len(self.requests) and self.requests[rid - 1].completed
        if done and rid not in self.answered_at:
            self.answered_at[rid] = now
            self.hook("reply")
        return woke


@dataclass(frozen=True, slots=True)
class PlannedCall:
    script: list[CallerTurn]
    call: dict[str, object]  # the call object without its id


def plan_calls(seed: int, calls: int, turns: int, escalations: int = 0) -> list[PlannedCall]:
    """The same calls for the same seed (the call ids are set when placed); the
    ``escalations`` calls evenly spread over them ask for the manager twice first."""
    rng = random.Random(seed)
    agent_id = f"agent_chaos_{seed}"
    escalating = escalating_calls(calls, escalations)
    planned = []
    for index in range(calls):
        script = random_script(random.Random(rng.getrandbits(64)), turns, 0.0, 0.0)
        if index in escalating:
            asks = min(2, len(script))
            script[:asks] = [CallerTurn(say=ESCALATION_LINE)] * asks
        obj = call_object("", agent_id, random.Random(rng.getrandbits(64)))
        planned.append(PlannedCall(script=script, call=obj))
    return planned


def escalating_calls(calls: int, escalations: int) -> set[int]:
    """The indexes of the escalating calls: ``escalations`` of ``calls``, evenly spread."""
    count = min(max(escalations, 0), calls)
    return {i * calls // count for i in range(count)} if count else set()


@dataclass(slots=True)
class Tripwire:
    """What the nemesis waits for: ``on`` a ``"request"`` (fired once the request is
    written) or a ``"reply"`` (fired the moment its ``content_complete`` is read) of a
    call it ``wants``."""

    wants: Callable[[str], bool]
    fire: Callable[[], None]
    on: str = "request"


@dataclass(slots=True)
class Generator:
    url: str
    seed: int
    planned: list[PlannedCall]
    #: ``None``: no pauses (the control run)
    duration_s: float | None
    profile: str | None = None
    calls: list[SimulatedCall] = field(default_factory=list)
    hung_up: set[int] = field(default_factory=set)
    _tasks: dict[int, asyncio.Task[object]] = field(default_factory=dict)
    _tripwire: Tripwire | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _rng: random.Random = field(default_factory=random.Random)

    def options(self) -> SimOptions:
        turns = max((len(p.script) for p in self.planned), default=1)
        think_ms = ramp_ms = 0.0
        if self.duration_s is not None:
            think_ms = self.duration_s * TALK_SHARE / max(turns, 1) * 1000.0
            ramp_ms = self.duration_s * RAMP_SHARE * 1000.0
        return SimOptions(
            url=self.url,
            calls=len(self.planned),
            turns=turns,
            think_ms=think_ms,
            ramp_ms=ramp_ms,
            seed=self.seed,
            profile=self.profile,
            violation_samples=ALL_SAMPLES,
        )

    async def run(self) -> History:
        """Place every call and return what happened."""
        self._loop = asyncio.get_running_loop()
        self._rng = random.Random(self.seed ^ 0x5EED)
        options = self.options()
        metrics = RunMetrics(ALL_SAMPLES)
        grace = options.stale_grace_ms / 1000.0
        wall_offset = time.time() - time.perf_counter()
        started = time.time()
        for plan in self.planned:
            call_id = new_id()
            obj = {**plan.call, "call_id": call_id}
            call = SimulatedCall(
                options, metrics, call_id, obj, plan.script, random.Random(self._rng.random())
            )
            call.ledger = TrackedLedger(
                call_id, metrics, grace, functools.partial(self._on_ledger, call_id)
            )
            self.calls.append(call)
        ramp = options.ramp_ms / 1000.0
        count = max(len(self.calls), 1)
        await asyncio.gather(*(self._play(i, ramp * i / count) for i in range(len(self.calls))))
        return self._history(metrics, started, wall_offset)

    async def _play(self, index: int, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        task: asyncio.Task[object] = asyncio.create_task(self.calls[index].run())
        self._tasks[index] = task
        try:
            await task
        except asyncio.CancelledError:
            if index not in self.hung_up:
                raise
        finally:
            self._tasks.pop(index, None)

    # ---------------------------------------------------------------- nemesis hooks

    async def extra_call(self, script: list[CallerTurn]) -> tuple[str, list[int], str]:
        """Place one call outside the run (no pauses) and play ``script``: its call id,
        the response ids answered, and how it ended."""
        options = dataclasses.replace(self.options(), calls=1, think_ms=0.0, ramp_ms=0.0)
        metrics = RunMetrics(ALL_SAMPLES)
        call_id = new_id()
        obj = call_object(call_id, f"agent_chaos_{self.seed}", random.Random(self.seed))
        call = SimulatedCall(options, metrics, call_id, obj, script, random.Random(self.seed))
        await call.run()
        answered = [r.id for r in call.ledger.requests if r.completed]
        return call_id, answered, call.record.reason

    def live_call_ids(self) -> list[str]:
        return [self.calls[i].call_id for i in list(self._tasks)]

    def turns_in_flight(self) -> int:
        count = 0
        for i in list(self._tasks):
            req = self.calls[i].ledger.current
            if req is not None and not (req.completed or req.interrupted or req.superseded_at):
                count += 1
        return count

    def hang_up(self, count: int) -> list[str]:
        """End ``count`` live calls at once (call from the loop's thread): each closes its
        socket with 1000, as Retell does when the caller hangs up."""
        live = sorted(self._tasks)
        chosen = self._rng.sample(live, min(count, len(live)))
        for index in chosen:
            self.hung_up.add(index)
            self._tasks[index].cancel()
        return [self.calls[i].call_id for i in chosen]

    def arm(self, tripwire: Tripwire | None) -> None:
        """Fire ``tripwire`` at the next request or reply of a call it wants."""
        self._tripwire = tripwire

    def _on_ledger(self, call_id: str, what: str) -> None:
        wire = self._tripwire
        if wire is None or wire.on != what or not wire.wants(call_id):
            return
        self._tripwire = None
        if what == "reply":
            wire.fire()  # now: the node has just sent content_complete
            return
        assert self._loop is not None
        self._loop.call_soon(wire.fire)  # after this step: the request is on the wire

    # ---------------------------------------------------------------- history

    def _history(self, metrics: RunMetrics, started: float, offset: float) -> History:
        def wall(perf: float | None) -> float | None:
            return None if perf is None else round(perf + offset, 6)

        index_of = {c.call_id: i for i, c in enumerate(self.calls)}
        greetings: dict[str, int] = {}
        for v in metrics.violation_samples:
            if v.kind == "repeated_greeting":
                greetings[v.call_id] = greetings.get(v.call_id, 0) + 1
        history = History(seed=self.seed, started_at=started, ended_at=time.time())
        for i, call in enumerate(self.calls):
            record = call.record
            history.calls.append(
                CallResult(
                    call=i,
                    call_id=call.call_id,
                    reason=record.reason,
                    failed=record.failed,
                    replies=[o.reply for o in record.outcomes],
                    completed=[o.completed for o in record.outcomes],
                    planned_turns=len(call.script),
                    repeated_greetings=greetings.get(call.call_id, 0),
                    hung_up=i in self.hung_up,
                    handoffs=sum(1 for o in record.interrupts if o.transfer_number is not None),
                    transferred=record.reason == CALL_TRANSFER,
                )
            )
            ledger = call.ledger
            answered = ledger.answered_at if isinstance(ledger, TrackedLedger) else {}
            for req in ledger.requests:
                asked = wall(req.sent_at)
                assert asked is not None
                history.turns.append(
                    TurnEvent(
                        call=i,
                        response_id=req.id,
                        kind=req.kind,
                        asked_at=asked,
                        first_at=wall(req.first_at),
                        answered_at=wall(answered.get(req.id)),
                        superseded=req.superseded_at is not None,
                    )
                )
        for e in metrics.reconnect_events:
            if e.call_id in index_of:
                history.sockets.append(
                    SocketEvent(
                        call=index_of[e.call_id],
                        cause=e.cause,
                        lost_at=e.lost_at,
                        reopened_at=e.reopened_at,
                        answered_at=e.answered_at,
                        begin_empty=e.begin_empty,
                    )
                )
        history.violations = dict(metrics.violations)
        return history

"""The escalation service: rules over the event stream, acting on live calls, once.

Per batch, in one SQLite transaction (``EscalationStore``): the new event ids, every
touched call's ``CallTrack`` and each decision (status ``pending``). Then each decision
is carried out through the owning node's command channel (``CallControl``: one
``agent_interrupt`` that says the handoff line and transfers, or says it alone) or by
POSTing to the supervisor webhook, recorded as ``done``/``failed``, and reported as a
``call.escalated`` event. Then the runner acks the batch.

Exactly once, through crashes and outages:

* The command id is the decision's idempotency key (``escalation:<trigger event id>``),
  the same on every attempt. The owning node records it before acting, so a retry after
  a ``kill -9`` between acting and recording, or after a reply that never came, gets the
  recorded outcome and the caller hears the handoff once. The webhook gets the key as
  ``Idempotency-Key``.
* Any error whose outcome is unknown or passing (the call moving, its node not
  answering, Redis or the network failing) leaves the decision ``pending``; a sweep
  every ``sweep_interval_s`` asks again, until ``pending_max_age_s``: then it is
  ``failed`` and ``<action>_failed`` is published. A definite refusal (the call is not
  live, the webhook answered an error) is ``failed`` at once.
* A turn older than ``stale_after_s`` never triggers an action (``observe``).
* ``call.escalated`` gets its id when the outcome is recorded, and the row stays
  unpublished until the bus took it: the sweep publishes it again, with the same id.
"""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime

import httpx
import msgspec

from switchboard.control.client import CallControl, CommandFailed
from switchboard.events.bus import Batch, EventBus
from switchboard.events.codec import encode
from switchboard.events.types import CallEscalated, Event, make_event
from switchboard.log import get_logger
from switchboard.services.escalation.rules import Decision, RulesFile
from switchboard.services.escalation.store import EscalationStore

__all__ = ["Escalation", "EscalationStore"]

_log = get_logger("switchboard.escalation")

#: A turn older than this (s) describes the call as it was: it is not acted on.
STALE_AFTER_S = 60.0
#: A decision still not carried out after this long (s) is given up, reported as failed.
PENDING_MAX_AGE_S = 120.0
#: How often (s) pending decisions and unpublished outcomes are retried.
SWEEP_INTERVAL_S = 2.0


def idempotency_key(decision: Decision) -> str:
    """One key per decision, stable across attempts and restarts."""
    return f"escalation:{decision.trigger_event_id}"


class Escalation:
    """The batch handler: decide (durably), act once, record, publish; and the sweep."""

    def __init__(
        self,
        rules: RulesFile,
        store: EscalationStore,
        control: CallControl,
        bus: EventBus,
        http: httpx.AsyncClient,
        *,
        stale_after_s: float = STALE_AFTER_S,
        pending_max_age_s: float = PENDING_MAX_AGE_S,
        sweep_interval_s: float = SWEEP_INTERVAL_S,
    ) -> None:
        self.rules = rules
        self.store = store
        self.control = control
        self.bus = bus
        self.http = http
        self.stale_after_s = stale_after_s
        self.pending_max_age_s = pending_max_age_s
        self.sweep_interval_s = sweep_interval_s
        self.carried_out = 0
        #: one decision acted on at a time: the batch and the sweep never both act on one
        self._acting = asyncio.Lock()
        self._sweeper: asyncio.Task[None] | None = None

    async def resume_pending(self) -> None:
        """At start: carry out what a crash left pending, then keep sweeping."""
        try:
            await self.sweep()
        except Exception:
            _log.exception("escalation sweep at start failed; the periodic sweep retries")
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(
                self._sweep_forever(), name="escalation-sweep"
            )

    async def stop(self) -> None:
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
            await asyncio.wait({sweeper}, timeout=5.0)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval_s)
            try:
                await self.sweep()
            except Exception:
                _log.exception("escalation sweep failed; trying again")

    async def sweep(self) -> None:
        for pending in await self.store.pending():
            await self.act(pending.decision, decided_at=pending.decided_at)
        for finished in await self.store.unpublished():
            event = self._report(finished.decision, finished.status, finished.detail)
            await self._publish(msgspec.structs.replace(event, id=finished.event_id))

    async def handle(self, batch: Batch) -> None:
        now = datetime.now(UTC)
        decisions = await self.store.decide(
            self.rules, batch.events, stale_after_s=self.stale_after_s, now=now
        )
        for decision in decisions:
            await self.act(decision, decided_at=now)

    async def act(self, decision: Decision, *, decided_at: datetime) -> None:
        """Carry ``decision`` out if it is still pending; never raises for a failure of
        the action (the decision stays pending and the sweep retries it)."""
        async with self._acting:
            if await self.store.status(decision.call_id) != "pending":
                return
            status, detail = await self._carry_out(decision)
            if status is None:
                age_s = (datetime.now(UTC) - decided_at).total_seconds()
                if age_s < self.pending_max_age_s:
                    _log.warning(
                        "escalation not carried out yet; will retry",
                        call_id=decision.call_id,
                        error=detail,
                    )
                    return
                status = "failed"
                detail = f"{decision.detail}; gave up after {age_s:.0f} s: {detail}"
            event = self._report(decision, status, detail)
            try:
                await self.store.finish(decision, status, detail, event.id)
            except sqlite3.Error as err:
                # Acted but not recorded: the sweep asks again with the same key, and the
                # node answers with what it recorded.
                _log.error("escalation outcome not recorded", call_id=decision.call_id, error=err)
                return
            self.carried_out += status == "done"
            _log.info("escalated", call_id=decision.call_id, rule=decision.rule, status=status)
        await self._publish(event)

    async def _carry_out(self, decision: Decision) -> tuple[str | None, str]:
        """(``done``|``failed``, detail), or (``None``, why) when it may work later."""
        key = idempotency_key(decision)
        try:
            if decision.action == "transfer":
                assert decision.number
                await self.control.transfer(
                    decision.call_id, decision.number, text=decision.line, command_id=key
                )
            elif decision.action == "say":
                await self.control.say(decision.call_id, decision.line, command_id=key)
            else:
                await self._alert(decision, key)
        except CommandFailed as err:
            if err.retriable:
                return None, str(err)
            return "failed", self._failed(decision, err)
        except httpx.HTTPStatusError as err:
            return "failed", self._failed(decision, err)
        except Exception as err:  # Redis, the network, anything: the outcome is unknown
            return None, f"{type(err).__name__}: {err}"
        return "done", decision.detail

    def _failed(self, decision: Decision, err: Exception) -> str:
        _log.warning("escalation not carried out", call_id=decision.call_id, error=str(err))
        return f"{decision.detail}; {err}"

    async def _alert(self, decision: Decision, key: str) -> None:
        url = self.rules.supervisor_webhook
        assert url
        body = {"call_id": decision.call_id, "rule": decision.rule, "detail": decision.detail}
        response = await self.http.post(url, json=body, headers={"Idempotency-Key": key})
        response.raise_for_status()

    def _report(self, decision: Decision, status: str, detail: str) -> Event:
        data = CallEscalated(
            rule=decision.rule,
            action=decision.action if status == "done" else f"{decision.action}_failed",
            detail=detail,
            transfer_number=decision.number,
            trigger_event_id=decision.trigger_event_id,
        )
        return make_event(data, call_id=decision.call_id, source="service/escalation")

    async def _publish(self, event: Event) -> None:
        """One attempt; if the bus does not take it the sweep tries again, same id."""
        try:
            await self.bus.send([encode(event)])
        except Exception as err:
            _log.warning("call.escalated not published yet", call_id=event.call_id, error=str(err))
            return
        try:
            await self.store.mark_published(event.call_id)
        except sqlite3.Error as err:  # published again later; consumers dedupe by id
            _log.warning("publication not recorded", call_id=event.call_id, error=str(err))

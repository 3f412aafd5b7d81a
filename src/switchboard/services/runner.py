"""The loop every service runs: fetch a batch, write it, then ack it.

The order is the guarantee: a batch is acknowledged only after every message in it is
either written by the handler or parked as a dead letter, both durably. A crash
(``kill -9``) in between redelivers the batch, which the handler's dedupe by event id
(and the dead-letter store's by position) turns into a no-op.

Failures are told apart, after arq's bounded retries:

- *transient* (the database or Redis unreachable, a timeout, a disk I/O error): the batch
  is retried with backoff, never acked and never parked, for as long as it takes;
- *deterministic* (the value does not fit: ``OverflowError``, ``DataError``,
  ``ValueError``...): the batch is bisected until the one failing event is alone, and
  that event is parked with the reason; the good ones go on;
- anything else is retried ``max_tries`` times, then treated as deterministic, so no
  message is ever retried forever.

Messages that do not decode arrive already rejected by the bus (``Batch.rejected``) and
are parked before the batch is handled. Between batches the loop replays the dead
letters an operator asked for (``switchboard service deadletters replay``) and refreshes
the group's lag. ``stop`` ends the loop between batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable
from typing import Protocol, TypeVar

from switchboard.events.bus import Batch, BusUnavailable, EventConsumer
from switchboard.events.codec import EventDecodeError, decode, encode
from switchboard.log import get_logger
from switchboard.services.dead_letters import REPLAY, DeadLetterStore, Letter
from switchboard.services.service_metrics import ServiceStats

_log = get_logger("switchboard.service")

#: Exception class names (anywhere in the MRO) meaning "the target is away, try later".
_TRANSIENT = frozenset(
    {
        "ConnectionError",  # builtin and redis-py
        "TimeoutError",  # builtin and redis-py
        "PostgresConnectionError",
        "CannotConnectNowError",
        "OperatorInterventionError",  # the server is shutting down
        "InsufficientResourcesError",  # disk full, too many connections
        "InterfaceError",  # asyncpg: the connection is closed
        "OperationalError",  # SQLite: locked, disk I/O, cannot open
        "TransportError",  # httpx
    }
)
#: Exception class names meaning "this value can never be written".
_DETERMINISTIC = frozenset({"DataError", "IntegrityError", "DecodeError", "ValidationError"})


class BatchHandler(Protocol):
    async def handle(self, batch: Batch) -> None:
        """Apply the batch; return only once the effect is durable (or idempotent)."""
        ...


def classify(err: BaseException) -> str:
    """``deterministic``, ``transient`` or ``unknown``: what a failure says about a retry."""
    names = {cls.__name__ for cls in type(err).__mro__}
    if isinstance(err, ArithmeticError | LookupError | TypeError | RecursionError | ValueError):
        return "deterministic"
    if names & _DETERMINISTIC:
        return "deterministic"
    if isinstance(err, OSError | BusUnavailable) or names & _TRANSIENT:
        return "transient"
    return "unknown"


def reason_of(err: BaseException) -> str:
    return type(err).__name__


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


def _part(batch: Batch, lo: int, hi: int) -> Batch:
    return Batch(
        batch.events[lo:hi],
        skipped=batch.skipped if lo == 0 else Counter(),
        raw=batch.raw[lo:hi],
        where=batch.where[lo:hi],
        source=batch.source,
    )


T = TypeVar("T")


async def or_stop(stop: asyncio.Event, op: Awaitable[T]) -> T | None:
    """``op``'s result, or ``None`` once ``stop`` is set first (``op`` is cancelled). A bus
    call can wait on a broker that is gone (a Kafka commit or position waits for a group
    coordinator that never comes back); SIGTERM must not wait with it."""
    if stop.is_set():
        if asyncio.iscoroutine(op):
            op.close()
        return None
    task = asyncio.ensure_future(op)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    return None


class Runner:
    """One service's consume loop, its dead letters and its counters."""

    def __init__(
        self,
        consumer: EventConsumer,
        handler: BatchHandler,
        dead_letters: DeadLetterStore,
        stop: asyncio.Event,
        *,
        group: str,
        stats: ServiceStats | None = None,
        max_events: int = 500,
        idle_s: float = 0.5,
        retry_max_s: float = 2.0,
        max_tries: int = 3,
        tick_s: float = 1.0,
    ) -> None:
        self.consumer = consumer
        self.handler = handler
        self.dead_letters = dead_letters
        self.stop = stop
        self.group = group
        self.stats = stats or ServiceStats(group)
        self.max_events = max_events
        self.idle_s = idle_s
        self.retry_max_s = retry_max_s
        self.max_tries = max_tries
        self.tick_s = tick_s

    async def run(self) -> None:
        backoff = 0.05
        next_tick = 0.0
        while not self.stop.is_set():
            if time.monotonic() >= next_tick:
                await or_stop(self.stop, self._tick())
                next_tick = time.monotonic() + self.tick_s
            try:
                batch = await or_stop(self.stop, self.consumer.fetch(self.max_events, self.idle_s))
            except BusUnavailable as err:
                _log.warning("bus unavailable; retrying", error=str(err), retry_in_s=backoff)
                await _pause(self.stop, backoff)
                backoff = min(backoff * 2, self.retry_max_s)
                continue
            if batch is None:
                return  # stopping while the bus did not answer
            backoff = 0.05
            self.stats.gaps += batch.gaps
            if batch.empty:
                continue
            if not await self.process(batch):
                return  # stopping with the batch unwritten: it stays unacked
            try:
                await or_stop(self.stop, self.consumer.ack(batch))
            except BusUnavailable as err:
                _log.warning("ack failed; the batch will be redelivered", error=str(err))

    async def process(self, batch: Batch) -> bool:
        """Park what did not decode, then apply the events; ``False`` if stopping first."""
        letters = [
            Letter(r.message, batch.source, r.where, r.reason, r.detail) for r in batch.rejected
        ]
        if letters and not await self._park(letters):
            return False
        if not batch.events and not batch.skipped:
            return True
        return await self._apply(batch)

    async def _apply(self, batch: Batch) -> bool:
        tries = 0
        backoff = 0.05
        while True:
            try:
                await self.handler.handle(batch)
                self.stats.handled += len(batch.events)
                return True
            except Exception as err:
                kind = classify(err)
                if kind == "transient":
                    self.stats.transient_retries += 1
                    _log.warning(
                        "writing a batch failed; retrying",
                        error=f"{type(err).__name__}: {err}",
                        events=len(batch.events),
                        retry_in_s=backoff,
                    )
                else:
                    tries += 1
                    if kind == "deterministic" or tries >= self.max_tries:
                        return await self._isolate(batch, err)
                    _log.exception("writing a batch failed; retrying", events=len(batch.events))
            if self.stop.is_set():
                return False
            await _pause(self.stop, backoff)
            backoff = min(backoff * 2, self.retry_max_s)

    async def _isolate(self, batch: Batch, err: Exception) -> bool:
        """Bisect a failing batch until the failing event is alone, then park it."""
        count = len(batch.events)
        if count > 1:
            middle = count // 2
            return await self._apply(_part(batch, 0, middle)) and await self._apply(
                _part(batch, middle, count)
            )
        if count == 0:
            _log.error("a batch without events failed; dropping its counts", error=str(err))
            return True
        event = batch.events[0]
        message = batch.raw[0] if batch.raw else encode(event)
        where = batch.where[0] if batch.where else f"event/{event.id}"
        detail = f"{type(err).__name__}: {err}"[:2000]
        _log.error(
            "an event the handler refuses is parked as a dead letter",
            event_id=event.id,
            type=event.type,
            call_id=event.call_id,
            error=detail,
        )
        return await self._park([Letter(message, batch.source, where, reason_of(err), detail)])

    async def _park(self, letters: list[Letter]) -> bool:
        backoff = 0.05
        while True:
            try:
                await self.dead_letters.park(self.group, letters)
                break
            except Exception as err:
                self.stats.transient_retries += 1
                _log.warning("parking dead letters failed; retrying", error=str(err))
            if self.stop.is_set():
                return False
            await _pause(self.stop, backoff)
            backoff = min(backoff * 2, self.retry_max_s)
        for letter in letters:
            self.stats.parked[letter.reason] += 1
            self.stats.dead_letters[(letter.reason, "parked")] += 1
        return True

    async def _tick(self) -> None:
        """Replay what an operator asked for, refresh the counts and the lag."""
        try:
            await self.replay_requested()
            self.stats.dead_letters = await self.dead_letters.counts(self.group)
        except Exception:
            _log.exception("replaying dead letters failed; trying again later")
        try:
            self.stats.lag = await self.consumer.lag()
        except Exception as err:  # a rebalance, a dead link: unknown until the next tick
            self.stats.lag = None
            _log.debug("reading the group's lag failed", error=str(err))

    async def replay_requested(self) -> int:
        """Feed the letters marked ``replay`` to the handler again; return how many worked."""
        worked = 0
        for letter in await self.dead_letters.list(group=self.group, state=REPLAY):
            try:
                event = decode(letter.message)
            except EventDecodeError as err:
                await self.dead_letters.park_again(letter.id, err.reason, str(err))
                continue
            batch = Batch(
                [event], raw=[letter.message], where=[letter.position], source=letter.source
            )
            try:
                await self.handler.handle(batch)
            except Exception as err:
                if classify(err) == "transient":
                    return worked  # the store is away: the letters stay marked
                await self.dead_letters.park_again(
                    letter.id, reason_of(err), f"{type(err).__name__}: {err}"
                )
                continue
            await self.dead_letters.replayed(letter.id)
            self.stats.replayed += 1
            worked += 1
        if worked:
            _log.info("dead letters replayed", group=self.group, replayed=worked)
        return worked

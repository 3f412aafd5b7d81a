"""Ended calls leave the live-call directory through one queue per node, never lost.

A hang-up used to release its call with its own Redis command at once, and a release
that failed (an outage, or a burst that outran the connection pool) was dropped: the call
stayed in ``{ns}live`` and in ``switchboard calls list`` until its state expired, an
hour later. Here a hang-up only *queues* the release; one task flushes the queue, at
most ``concurrency`` releases at a time. The store sends them on its one script socket,
riding on the next batch of claims and saves (``ScriptBatch``, ``soon=False``), so a
burst of a thousand hang-ups costs a few pipelined writes, never the pool. A release
that fails for want of Redis stays queued and is retried on the next heartbeat
(``retry``); one that fails for any other reason is tried ``max_attempts`` times, then
parked: logged at error level and counted, never retried forever.

A queued release that comes late is harmless: the store's release refuses to touch a
call that a newer claim holds (on this node or another).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from switchboard.connections import RedisHealth, is_link_error
from switchboard.log import get_logger
from switchboard.state.base import StoreUnavailable

_log = get_logger("switchboard.releases")

Release = Callable[[str, str], Awaitable[None]]


class ReleaseQueue:
    """Pending releases by call id (the latest socket's token wins) and the task that sends
    them."""

    def __init__(
        self,
        release: Release,
        health: RedisHealth,
        *,
        concurrency: int = 256,
        max_attempts: int = 3,
        capacity: int = 100_000,
    ) -> None:
        self._release = release
        self._health = health
        self._concurrency = concurrency
        self._max_attempts = max_attempts
        self._capacity = capacity
        self._pending: dict[str, str] = {}
        self._attempts: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.released = 0
        #: releases that failed for a reason other than Redis being unreachable, given up on
        self.parked = 0
        #: releases dropped because the queue was full (a very long outage)
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._pending)

    def put(self, call_id: str, token: str) -> None:
        """Queue the release of ``call_id`` held under ``token``; returns at once."""
        if call_id not in self._pending and len(self._pending) >= self._capacity:
            self.dropped += 1
            _log.error(
                "release queue full; an ended call stays listed until its state expires",
                call_id=call_id,
                capacity=self._capacity,
            )
            return
        self._pending[call_id] = token
        self._wake.set()

    def retry(self) -> None:
        """Send what is still queued (the heartbeat calls this once per beat)."""
        if self._pending:
            self._wake.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="release-queue")

    async def stop(self, timeout_s: float) -> None:
        """Send what is queued (within ``timeout_s``), then stop the task."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task}, timeout=timeout_s)
        if self._pending and self._health.is_up:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.flush(), timeout_s)
        if self._pending:
            _log.warning(
                "ended calls not released before shutdown; the directory prunes them",
                calls=len(self._pending),
            )

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def flush(self) -> int:
        """Send every queued release once; returns how many succeeded.

        An entry leaves the queue only once its release succeeded (or was parked), so a
        flush cut short (shutdown, cancellation) loses nothing.
        """
        if not self._health.is_up:
            return 0
        items = list(self._pending.items())
        done = 0
        for start in range(0, len(items), self._concurrency):
            chunk = items[start : start + self._concurrency]
            outcomes = await asyncio.gather(
                *(self._release(call_id, token) for call_id, token in chunk),
                return_exceptions=True,
            )
            for (call_id, token), outcome in zip(chunk, outcomes, strict=True):
                if isinstance(outcome, asyncio.CancelledError):
                    raise outcome
                if isinstance(outcome, BaseException) and not self._give_up(call_id, outcome):
                    continue
                if self._pending.get(call_id) == token:
                    del self._pending[call_id]
                if not isinstance(outcome, BaseException):
                    done += 1
                    self._attempts.pop(call_id, None)
        self.released += done
        return done

    def _give_up(self, call_id: str, exc: BaseException) -> bool:
        """Whether a failed release leaves the queue (parked) rather than waiting for a retry."""
        if isinstance(exc, StoreUnavailable) or is_link_error(exc):
            return False
        attempts = self._attempts.get(call_id, 0) + 1
        if attempts < self._max_attempts:
            self._attempts[call_id] = attempts
            return False
        self._attempts.pop(call_id, None)
        self.parked += 1
        _log.error(
            "release of an ended call failed; given up, it stays listed until its state expires",
            call_id=call_id,
            attempts=attempts,
            error=f"{type(exc).__name__}: {exc}"[:300],
        )
        return True

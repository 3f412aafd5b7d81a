"""The loop every service runs: fetch a batch, write it, then ack it.

The order is the guarantee: a batch is acknowledged only after the handler returned,
that is after its write is durable. A crash (``kill -9``) between the two redelivers
the batch, which the handler's dedupe by event id turns into a no-op. A write that
fails (database unreachable) is retried with backoff and never acked meanwhile; a bus
that fails is waited out the same way. ``stop`` ends the loop between batches.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

from switchboard.events.bus import Batch, BusUnavailable, EventConsumer
from switchboard.log import get_logger

_log = get_logger("switchboard.service")


class BatchHandler(Protocol):
    async def handle(self, batch: Batch) -> None:
        """Apply the batch; return only once the effect is durable (or idempotent)."""
        ...


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def consume(
    consumer: EventConsumer,
    handler: BatchHandler,
    stop: asyncio.Event,
    *,
    max_events: int = 500,
    idle_s: float = 0.5,
    retry_max_s: float = 2.0,
) -> None:
    backoff = 0.05
    while not stop.is_set():
        try:
            batch = await consumer.fetch(max_events, idle_s)
        except BusUnavailable as err:
            _log.warning("bus unavailable; retrying", error=str(err), retry_in_s=backoff)
            await _pause(stop, backoff)
            backoff = min(backoff * 2, retry_max_s)
            continue
        backoff = 0.05
        if not batch.events and not batch.skipped:
            continue
        if not await _write(handler, batch, stop, retry_max_s):
            return  # stopping with the batch unwritten: it stays unacked
        try:
            await consumer.ack(batch)
        except BusUnavailable as err:
            _log.warning("ack failed; the batch will be redelivered", error=str(err))


async def _write(
    handler: BatchHandler, batch: Batch, stop: asyncio.Event, retry_max_s: float
) -> bool:
    backoff = 0.05
    while True:
        try:
            await handler.handle(batch)
            return True
        except Exception:
            _log.exception("writing a batch failed; retrying", events=len(batch.events))
        if stop.is_set():
            return False
        await _pause(stop, backoff)
        backoff = min(backoff * 2, retry_max_s)

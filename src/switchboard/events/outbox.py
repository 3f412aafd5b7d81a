"""The ``Outbox``: where the turn path drops events, and the one task that ships them.

``put`` is synchronous and O(1): it appends to a bounded in-memory queue and wakes the
sender. Nothing on the turn path awaits the bus, the disk or a lock. The sender lets a
batch fill for ``linger_s`` (5 ms), then sends what has queued up as one batch (while one
is in flight the next accumulates), one batch in flight at a time, so the bus sees events
in ``put`` order.

When a send fails (``BusUnavailable``) the sender moves the queue, oldest first, to the
spill file (``spill.py``) and from then on appends new events there, replaying the file
in order, with backoff, until it is empty; then the queue is used again. A node that
restarts finds its spill file and replays it first. So per-call order (indeed the
node's whole order) is kept across an outage and a restart: queue -> file -> bus, FIFO.

Overflow: when the queue holds ``capacity`` events (the bus is up but slower than the
node, or the sender is behind), ``put`` moves the queue and the new event to the spill
file itself: a buffered write to the page cache, the only disk work the turn path can
ever do, and only in that state. Without a spill directory, overflow drops the newest
event and counts it (``dropped``). The batch in flight during an overflow is also in
the file, so it may reach the bus twice: at least once, consumers dedupe by event id.

fsync: ``batch`` (default) fsyncs the spill file once per sender pass that wrote to it,
in a worker thread; ``never`` leaves it to the OS (a killed process loses nothing, a
power cut may lose the last seconds). Events still in the in-memory queue when the
process is killed with ``SIGKILL`` are lost; ``close`` (SIGTERM, drain) sends or spills
them first.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Literal

from switchboard.events.bus import BusUnavailable, EventBus
from switchboard.events.codec import encode, encode_all
from switchboard.events.spill import SpillFile
from switchboard.events.types import Event
from switchboard.log import get_logger

_log = get_logger("switchboard.events.outbox")

FsyncPolicy = Literal["batch", "never"]


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxOptions:
    capacity: int = 10_000
    batch_max: int = 500
    #: how long the sender lets a batch fill before sending it (never on the turn path):
    #: fewer, larger sends cost the node less CPU per event, for a few ms of event latency
    linger_s: float = 0.005
    spill_dir: Path | None = None
    fsync: FsyncPolicy = "batch"
    retry_initial_s: float = 0.1
    retry_max_s: float = 2.0
    close_timeout_s: float = 5.0


@dataclass(slots=True)
class OutboxStats:
    put: int = 0
    sent: int = 0
    spilled: int = 0
    replayed: int = 0
    dropped: int = 0
    send_failures: int = 0
    batches: int = 0


class Outbox:
    def __init__(self, bus: EventBus, options: OutboxOptions | None = None) -> None:
        self.bus = bus
        self.options = options or OutboxOptions()
        self.stats = OutboxStats()
        self._queue: deque[Event] = deque()
        self._wake = asyncio.Event()
        self._spill: SpillFile | None = None
        self._dirty = False
        self._moved = 0  # bumped whenever the queue is moved to the spill file
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        if self.options.spill_dir is not None:
            self._spill = SpillFile(self.options.spill_dir)
            if self._spill.pending:
                _log.info("found spilled events from an earlier run; replaying them first")

    # ------------------------------------------------------------------ the turn path

    def put(self, event: Event) -> None:
        """Never blocks, never raises for a bus problem."""
        self.stats.put += 1
        if len(self._queue) >= self.options.capacity:
            if self._spill is None:
                self.stats.dropped += 1
                if self.stats.dropped % 1000 == 1:
                    _log.error("outbox full, no spill dir: dropping", dropped=self.stats.dropped)
                return
            self._move_queue_to_spill(event)
            return
        self._queue.append(event)
        self._wake.set()

    @property
    def depth(self) -> int:
        return len(self._queue)

    @property
    def spilling(self) -> bool:
        return self._spill is not None and self._spill.pending

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="outbox")

    async def close(self) -> None:
        """Send what is queued (up to ``close_timeout_s``), spill the rest, stop."""
        self._closing = True
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), self.options.close_timeout_s)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._queue and self._spill is not None:
            self._move_queue_to_spill(None)
        if self._spill is not None:
            if self._dirty:
                self._spill.sync()
            self._spill.close()
        if self._queue:
            _log.error("outbox closed with unsent events and no spill dir", lost=len(self._queue))

    # ------------------------------------------------------------------ the sender

    async def _run(self) -> None:
        backoff = self.options.retry_initial_s
        while True:
            try:
                if self.spilling:
                    ok = await self._replay_once()
                else:
                    if not self._queue:
                        if self._closing:
                            return
                        self._wake.clear()
                        await self._wake.wait()
                        continue
                    if self.options.linger_s and len(self._queue) < self.options.batch_max:
                        await asyncio.sleep(self.options.linger_s)
                    ok = await self._send_queue_head()
            except asyncio.CancelledError:
                raise
            except Exception:
                _log.exception("outbox sender failed; retrying")
                ok = False
            if self._dirty and self._spill is not None:
                self._dirty = False
                if self.options.fsync == "batch":
                    await asyncio.to_thread(self._spill.sync)
            if ok:
                backoff = self.options.retry_initial_s
                continue
            if self._closing:
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), backoff)
            backoff = min(backoff * 2, self.options.retry_max_s)

    async def _send_queue_head(self) -> bool:
        batch = list(islice(self._queue, self.options.batch_max))
        moved = self._moved
        try:
            await self.bus.send(encode_all(batch))
        except BusUnavailable as err:
            self.stats.send_failures += 1
            if self._spill is None:
                _log.warning("bus unavailable; holding events in memory", error=str(err))
                return False
            if self._moved == moved:  # else an overflow already moved them, batch included
                _log.warning("bus unavailable; spilling to disk", error=str(err))
                self._move_queue_to_spill(None)
            return False
        if self._moved == moved:
            for _ in batch:
                self._queue.popleft()
        self.stats.sent += len(batch)
        self.stats.batches += 1
        return True

    async def _replay_once(self) -> bool:
        spill = self._spill
        assert spill is not None
        if self._queue:
            self._move_queue_to_spill(None)
        messages, end = spill.read(self.options.batch_max)
        if not messages:
            spill.commit(end)
            return True
        try:
            await self.bus.send(messages)
        except BusUnavailable:
            self.stats.send_failures += 1
            return False
        spill.commit(end)
        self.stats.replayed += len(messages)
        self.stats.batches += 1
        if not spill.pending:
            _log.info("spill file replayed; back to the in-memory queue")
        return True

    def _move_queue_to_spill(self, extra: Event | None) -> None:
        spill = self._spill
        assert spill is not None
        queue = self._queue
        count = spill.append(encode(event) for event in queue)
        if extra is not None:
            count += spill.append((encode(extra),))
        queue.clear()
        self._moved += 1
        self._dirty = True
        self.stats.spilled += count
        self._wake.set()

"""The ``Outbox``: where the turn path drops events, and the one task that ships them.

``put`` is synchronous, O(1) and never raises: it appends to a bounded in-memory queue
and wakes the sender. Nothing on the turn path awaits the bus, the disk or a lock. The
sender lets a batch fill for ``linger_s`` (5 ms), then sends what has queued up as one
batch, one batch in flight at a time, so the bus sees events in ``put`` order.

Spilling. When a send fails (``BusUnavailable``), or is still in flight after
``stall_s`` (a hung link), the queue moves, oldest first, to the spill file
(``spill.py``), and while the file holds anything ``put`` appends there itself: no event
sits only in memory while the bus is unwell, so a ``SIGKILL`` loses none of them. The
sender replays the file in order, with backoff (``put`` never cuts a backoff short),
until it is empty; then the queue is used again. A node that restarts replays its file
first. So the node's order is kept across an outage and a restart: queue -> file -> bus.

Messages the bus will never take (``MessagesRejected``: too large, invalid) and events
above ``max_event_bytes`` are parked in ``outbox.parked`` with the reason, counted and
logged; the events behind them go on. Everything else that goes wrong in ``put`` (the
spill file at its byte cap, a full disk, an event that does not encode) drops that
event, counts it under its reason and logs an error line (throttled): the call goes on.

Overflow: when the queue holds ``capacity`` events (the bus is up but slower than the
node), ``put`` moves the queue and the new event to the spill file. Without a spill
directory overflow drops the newest event and counts it. A batch in flight when the
queue is moved is in the file too, so it may reach the bus twice: at least once,
consumers dedupe by event id.

fsync: ``batch`` (default) fsyncs the spill file once per sender pass that wrote to it,
in a worker thread; ``never`` leaves it to the OS. Either way what reached the file
survives a killed process; a power cut may lose the last unsynced seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Literal

from switchboard import tracing
from switchboard.events.bus import BusUnavailable, EventBus, MessagesRejected
from switchboard.events.codec import BusMessage, encode
from switchboard.events.parked import ParkedFile
from switchboard.events.spill import SpillFile, SpillFull
from switchboard.events.types import Event
from switchboard.log import LogThrottle, get_logger

_log = get_logger("switchboard.events.outbox")

FsyncPolicy = Literal["batch", "never"]

#: Kafka clients refuse a request above 1 MiB by default; an event stays well below it.
DEFAULT_MAX_EVENT_BYTES = 512 * 1024


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
    #: a send still in flight after this long sends the queue to the spill file
    stall_s: float = 0.5
    #: an event larger than this once encoded (value + key) is parked, never sent
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    #: the spill file's byte cap; past it new events are dropped and counted
    spill_max_bytes: int | None = 1 << 30
    parked_max_bytes: int = 64 << 20


@dataclass(slots=True)
class OutboxStats:
    put: int = 0
    sent: int = 0
    spilled: int = 0
    replayed: int = 0
    dropped: int = 0
    parked: int = 0
    send_failures: int = 0
    stalls: int = 0
    batches: int = 0
    dropped_by_reason: dict[str, int] = field(default_factory=dict)
    parked_by_reason: dict[str, int] = field(default_factory=dict)


class Outbox:
    def __init__(self, bus: EventBus, options: OutboxOptions | None = None) -> None:
        self.bus = bus
        self.options = options or OutboxOptions()
        self.stats = OutboxStats()
        self._queue: deque[Event] = deque()
        self._wake = asyncio.Event()
        self._closed = asyncio.Event()
        self._spill: SpillFile | None = None
        self._parked: ParkedFile | None = None
        self._dirty = False
        self._moved = 0  # bumped whenever the queue is moved to the spill file
        self._task: asyncio.Task[None] | None = None
        self._stall: asyncio.TimerHandle | None = None
        self._closing = False
        #: the spill file holds events not yet replayed: new ones go behind them, to the file
        self._file_first = False
        self._throttle = LogThrottle(burst=3)
        #: event id -> future told whether the event became durable (see ``put_durable``)
        self._durable: dict[str, asyncio.Future[bool]] = {}
        spill_dir = self.options.spill_dir
        if spill_dir is not None:
            self._spill = SpillFile(spill_dir, max_bytes=self.options.spill_max_bytes)
            self._parked = ParkedFile(spill_dir, max_bytes=self.options.parked_max_bytes)
            self._file_first = self._spill.pending
            if self._file_first:
                _log.info("found spilled events from an earlier run; replaying them first")

    # ------------------------------------------------------------------ the turn path

    def put(self, event: Event) -> None:
        """Never blocks, never raises: what cannot be kept is dropped and counted."""
        if tracing.ENABLED:
            with tracing.child(None, "outbox.put", **{"switchboard.event.type": event.type}):
                self._put(event)
        else:
            self._put(event)

    def _put(self, event: Event) -> None:
        self.stats.put += 1
        try:
            if self._file_first:
                self._to_spill((event,))
                return
            if len(self._queue) >= self.options.capacity:
                if self._spill is None:
                    self._drop((event,), "full")
                    return
                self._move_queue_to_spill(event)
                return
            self._queue.append(event)
            self._wake.set()
        except Exception as err:  # the turn path must not see it
            self._drop((event,), "error", detail=f"{type(err).__name__}: {err}")

    async def put_durable(self, event: Event, timeout_s: float) -> bool:
        """``put``, then wait until the event is on the bus, in the spill file or parked
        (True), or was dropped or ``timeout_s`` passed (False). For callers that must not
        confirm anything before the event is safe (webhook dedupe claims)."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._durable[event.id] = future
        try:
            self.put(event)
            async with asyncio.timeout(timeout_s):
                return await future
        except TimeoutError:
            return False
        finally:
            self._durable.pop(event.id, None)

    @property
    def depth(self) -> int:
        return len(self._queue)

    @property
    def spilling(self) -> bool:
        return self._spill is not None and self._spill.pending

    @property
    def corrupt(self) -> int:
        """Damaged spill records skipped on replay (their events are lost)."""
        return 0 if self._spill is None else self._spill.corrupt

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="outbox")

    async def close(self) -> None:
        """Send what is queued (up to ``close_timeout_s``), spill the rest, stop."""
        self._closing = True
        self._closed.set()
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), self.options.close_timeout_s)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._disarm_stall()
        if self._queue and self._spill is not None:
            self._move_queue_to_spill(None)
        if self._spill is not None:
            if self._dirty:
                self._spill.sync()
            self._spill.close()
        if self._parked is not None:
            self._parked.close()
        if self._queue:
            _log.error("outbox closed with unsent events and no spill dir", lost=len(self._queue))
            self._drop(list(self._queue), "closed")
            self._queue.clear()

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
            # Only ``close`` cuts a backoff short: new events never do.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), backoff)
            backoff = min(backoff * 2, self.options.retry_max_s)

    async def _send_queue_head(self) -> bool:
        batch = list(islice(self._queue, self.options.batch_max))
        messages = self._encode_batch(batch)
        if messages is None:  # some were parked or dropped and left the queue: look again
            return True
        moved = self._moved
        self._arm_stall()
        try:
            await self.bus.send(messages)
        except BusUnavailable as err:
            self.stats.send_failures += 1
            if self._spill is None:
                self._log_once("held", "bus unavailable; holding events in memory", err)
                return False
            if self._moved == moved:  # else an overflow or a stall already moved them
                self._log_once("spill", "bus unavailable; spilling to disk", err)
                self._move_queue_to_spill(None)
            return False
        except MessagesRejected as err:
            self._park_rejected(messages, err)
            rejected = len(err.rejected)
        else:
            rejected = 0
        finally:
            self._disarm_stall()
        if self._moved == moved:
            for _ in batch:
                self._queue.popleft()
        self.stats.sent += len(batch) - rejected
        self.stats.batches += 1
        if self._durable:
            for event in batch:
                self._settle(event.id, True)
        return True

    def _encode_batch(self, batch: list[Event]) -> list[BusMessage] | None:
        """The batch's messages; ``None`` when an event had to leave the queue (parked as
        too large, or dropped as unencodable), which is rare enough to rebuild it."""
        messages: list[BusMessage] = []
        limit = self.options.max_event_bytes
        gone: set[str] = set()
        for event in batch:
            try:
                message = encode(event)
            except Exception as err:
                self._drop((event,), "unencodable", detail=f"{type(err).__name__}: {err}")
                gone.add(event.id)
                continue
            if len(message.value) + len(message.key) > limit:
                self._park(message, "too_large")
                self._settle(event.id, True)
                gone.add(event.id)
                continue
            messages.append(message)
        if not gone:
            return messages
        self._queue = deque(e for e in self._queue if e.id not in gone)
        return None

    async def _replay_once(self) -> bool:
        spill = self._spill
        assert spill is not None
        if self._queue:
            self._move_queue_to_spill(None)
        messages, end = spill.read(self.options.batch_max)
        limit = self.options.max_event_bytes
        fits = [m for m in messages if len(m.value) + len(m.key) <= limit]
        if len(fits) < len(messages):  # written under a larger limit by an earlier run
            for message in messages:
                if len(message.value) + len(message.key) > limit:
                    self._park(message, "too_large")
        if not fits:
            spill.commit(end)
            self._file_first = spill.pending
            return True
        rejected = 0
        try:
            await self.bus.send(fits)
        except BusUnavailable:
            self.stats.send_failures += 1
            return False
        except MessagesRejected as err:
            self._park_rejected(fits, err)
            rejected = len(err.rejected)
        spill.commit(end)
        self._file_first = spill.pending
        self.stats.replayed += len(fits) - rejected
        self.stats.batches += 1
        if not self._file_first:
            _log.info("spill file replayed; back to the in-memory queue")
        return True

    # ------------------------------------------------------------------ spilling

    def _arm_stall(self) -> None:
        if self._spill is not None and self.options.stall_s > 0:
            loop = asyncio.get_running_loop()
            self._stall = loop.call_later(self.options.stall_s, self._on_stall)

    def _disarm_stall(self) -> None:
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None

    def _on_stall(self) -> None:
        """A send hangs: what waits for it (the batch in flight included) goes to disk."""
        self._stall = None
        if self._queue:
            self.stats.stalls += 1
            self._log_once("stall", "bus send hangs; spilling to disk", None)
            self._move_queue_to_spill(None)

    def _move_queue_to_spill(self, extra: Event | None) -> None:
        events = list(self._queue)
        if extra is not None:
            events.append(extra)
        self._queue.clear()
        self._moved += 1
        self._to_spill(events)
        self._wake.set()

    def _to_spill(self, events: Sequence[Event]) -> None:
        """Encode and append ``events``; park the too large, drop what does not fit."""
        spill = self._spill
        assert spill is not None
        kept: list[Event] = []
        messages: list[BusMessage] = []
        limit = self.options.max_event_bytes
        for event in events:
            try:
                message = encode(event)
            except Exception as err:
                self._drop((event,), "unencodable", detail=f"{type(err).__name__}: {err}")
                continue
            if len(message.value) + len(message.key) > limit:
                self._park(message, "too_large")
                self._settle(event.id, True)
                continue
            kept.append(event)
            messages.append(message)
        try:
            written = spill.append(messages)
        except SpillFull as full:
            written = full.written
            self._drop(kept[written:], "spill_full", detail=full.reason)
        self._dirty = True
        self._file_first = spill.pending
        self.stats.spilled += written
        if self._durable:
            for event in kept[:written]:
                self._settle(event.id, True)

    # ------------------------------------------------------------------ losses

    def _park_rejected(self, messages: Sequence[BusMessage], err: MessagesRejected) -> None:
        for index, reason in err.rejected.items():
            self._park(messages[index], reason)

    def _park(self, message: BusMessage, reason: str) -> None:
        stats = self.stats
        stats.parked += 1
        stats.parked_by_reason[reason] = stats.parked_by_reason.get(reason, 0) + 1
        kept = False
        if self._parked is not None:
            try:
                kept = self._parked.park(message, reason)
            except OSError:
                kept = False
        headers = dict(message.headers)
        suppressed = self._throttle.allow(f"park:{reason}")
        if suppressed is not None:
            _log.error(
                "event parked: the bus will never take it",
                reason=reason,
                bytes=len(message.value),
                event_id=headers.get("ce_id", b"").decode(errors="replace"),
                event_type=headers.get("ce_type", b"").decode(errors="replace"),
                call_id=message.key.decode(errors="replace"),
                kept_in_file=kept,
                **({"suppressed": suppressed} if suppressed else {}),
            )

    def _drop(self, events: Sequence[Event], reason: str, detail: str = "") -> None:
        if not events:
            return
        stats = self.stats
        stats.dropped += len(events)
        stats.dropped_by_reason[reason] = stats.dropped_by_reason.get(reason, 0) + len(events)
        for event in events:
            self._settle(event.id, False)
        suppressed = self._throttle.allow(f"drop:{reason}")
        if suppressed is not None:
            _log.error(
                "outbox dropped events",
                reason=reason,
                count=len(events),
                dropped_total=stats.dropped,
                **({"detail": detail} if detail else {}),
                **({"suppressed": suppressed} if suppressed else {}),
            )

    def _settle(self, event_id: str, durable: bool) -> None:
        future = self._durable.pop(event_id, None) if self._durable else None
        if future is not None and not future.done():
            future.set_result(durable)

    def _log_once(self, key: str, message: str, err: Exception | None) -> None:
        suppressed = self._throttle.allow(key)
        if suppressed is not None:
            _log.warning(
                message,
                **({"error": str(err)} if err is not None else {}),
                **({"suppressed": suppressed} if suppressed else {}),
            )

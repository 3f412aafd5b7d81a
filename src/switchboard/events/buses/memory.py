"""In-process bus: one ordered log in memory, consumer groups with committed positions.

For the ``single`` profile's in-process hooks and for tests. It has the same delivery
contract as the networked buses (a batch fetched and not acked is delivered again once
its consumer closes) but nothing survives the process.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

from switchboard.events.bus import Batch, decode_batch
from switchboard.events.codec import BusMessage


class _Group:
    __slots__ = ("committed", "delivered")

    def __init__(self) -> None:
        self.committed = 0
        self.delivered = 0


class MemoryBus:
    def __init__(self) -> None:
        self.log: list[BusMessage] = []
        self._groups: dict[str, _Group] = {}
        self._grew: asyncio.Event | None = None

    async def send(self, messages: Sequence[BusMessage]) -> None:
        self.log.extend(messages)
        if self._grew is not None:
            self._grew.set()
            self._grew = None

    async def _wait_growth(self, timeout_s: float) -> None:
        if self._grew is None:
            self._grew = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._grew.wait(), timeout_s)

    def consumer(self, group: str, name: str) -> MemoryConsumer:
        return MemoryConsumer(self, self._groups.setdefault(group, _Group()))

    async def close(self) -> None:
        pass


class MemoryConsumer:
    def __init__(self, bus: MemoryBus, group: _Group) -> None:
        self._bus = bus
        self._group = group
        self._unacked: list[tuple[int, int]] = []

    async def fetch(self, max_events: int = 500, timeout_s: float = 1.0) -> Batch:
        group = self._group
        if group.delivered >= len(self._bus.log):
            await self._bus._wait_growth(timeout_s)
        start = group.delivered
        messages = self._bus.log[start : start + max_events]
        group.delivered = start + len(messages)
        token = (start, group.delivered)
        if messages:
            self._unacked.append(token)
        positions = (str(start + i) for i in range(len(messages)))
        return decode_batch(zip(positions, messages, strict=False), source="memory", token=token)

    async def ack(self, batch: Batch) -> None:
        token = batch.token
        if token in self._unacked:
            self._unacked.remove(token)
        self._group.committed = max(self._group.committed, token[1])

    async def lag(self) -> int | None:
        return len(self._bus.log) - self._group.delivered

    async def close(self) -> None:
        if self._unacked:  # give back what this member took and never finished
            self._group.delivered = min(self._group.delivered, self._group.committed)
            self._unacked.clear()

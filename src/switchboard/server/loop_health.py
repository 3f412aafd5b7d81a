"""How long the node's event loop keeps every call waiting: loop lag and GC pauses.

Every frame of every call on a node is a callback on one event loop, so a busy loop or a
garbage collection delays all of them at once: that, not any single call, is where a
node's latency tail comes from at thousands of calls. Operators see both in ``/metrics``
(``switchboard_event_loop_lag_seconds``, ``switchboard_gc_pause_seconds``), and the bench
reads them to tell the server's share of a latency from the load generator's.

The lag probe asks to sleep ``interval`` and records how much later it woke (a few µs on
a free loop). The GC observer times each collection through ``gc.callbacks``. Neither is
on a call's path: one timer every 100 ms, and two clock reads per collection.
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

from prometheus_client import CollectorRegistry, Histogram

_PAUSE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
#: How often the lag probe wakes.
LAG_INTERVAL_S = 0.1


class LoopHealth:
    """Owns the lag probe task and the GC callback; ``start``/``stop`` in the lifespan."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.lag = Histogram(
            "switchboard_event_loop_lag_seconds",
            "How late the event loop ran a timer (every call waits as long).",
            buckets=_PAUSE_BUCKETS,
            registry=registry,
        )
        pauses = Histogram(
            "switchboard_gc_pause_seconds",
            "Garbage collections, by generation (every call waits as long).",
            ["generation"],
            buckets=_PAUSE_BUCKETS,
            registry=registry,
        )
        self._pauses = [pauses.labels(str(generation)) for generation in range(3)]
        self._gc_started = 0.0
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._probe(), name="loop-lag")
            gc.callbacks.append(self._on_gc)

    async def stop(self) -> None:
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _probe(self) -> None:
        clock = time.perf_counter
        observe = self.lag.observe
        while True:
            before = clock()
            await asyncio.sleep(LAG_INTERVAL_S)
            observe(max(0.0, clock() - before - LAG_INTERVAL_S))

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif self._gc_started:
            self._pauses[min(int(info.get("generation", 2)), 2)].observe(
                time.perf_counter() - self._gc_started
            )
            self._gc_started = 0.0

"""How busy the simulator itself is: event-loop lag and CPU time.

A load generator that saturates its own core measures itself, not the server. The lag
ticker asks to sleep ``interval`` and records how much later it woke up; with a free
loop that is a few µs, with a saturated one it grows with the backlog of ready callbacks.
"""

from __future__ import annotations

import asyncio
import time

import psutil

from switchboard.sim.metrics import Histogram
from switchboard.sim.results import ProcessStats


async def measure_loop_lag(histogram: Histogram, interval: float) -> None:
    """Run until cancelled, recording each oversleep into ``histogram``."""
    now = time.perf_counter
    while True:
        before = now()
        await asyncio.sleep(interval)
        histogram.record(max(0.0, now() - before - interval))


class CpuMeter:
    """CPU seconds this process spends between ``__init__`` and ``stats``."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._cpu = self._cpu_seconds()
        self._wall = time.perf_counter()

    def _cpu_seconds(self) -> float:
        times = self._process.cpu_times()
        return float(times.user + times.system)

    def stats(self, loop_lag: Histogram | None = None) -> ProcessStats:
        cpu = self._cpu_seconds() - self._cpu
        wall = max(time.perf_counter() - self._wall, 1e-9)
        return ProcessStats(
            cpu_seconds=round(cpu, 3),
            cpu_percent=round(100.0 * cpu / wall, 1),
            loop_lag=loop_lag.summary() if loop_lag is not None else None,
        )

"""Play recorded calls against a target: the simulator's caller, one script per call.

Calls start as ``concurrency`` allows (a slot frees when a call ends); within a call the
recorded silences and word gaps are kept, scaled by ``speed``. Each call speaks Retell's
side of the protocol exactly as ``switchboard simulate`` does (config, call_details,
keepalive pings, reconnects), so a replay is also a load test of the new version.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from switchboard.replay.model import RecordedCall
from switchboard.replay.plan import call_details, script
from switchboard.sim.call_object import new_id
from switchboard.sim.caller import SimulatedCall
from switchboard.sim.conversation import CallRecord
from switchboard.sim.lag import CpuMeter, measure_loop_lag
from switchboard.sim.metrics import RunMetrics
from switchboard.sim.options import SimOptions
from switchboard.sim.results import ProcessStats
from switchboard.sim.runner import GC_THRESHOLD


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    url: str
    speed: float = 1.0
    concurrency: int = 10
    #: seconds to wait for a reply's ``content_complete`` before calling it missing
    turn_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if self.speed <= 0:
            raise ValueError(f"speed must be positive, got {self.speed:g}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {self.concurrency}")

    def sim_options(self) -> SimOptions:
        return SimOptions(
            url=self.url, think_ms=0.0, word_ms=0.0, turn_timeout_s=self.turn_timeout_s
        )


@dataclass(frozen=True, slots=True)
class PlayedCall:
    recorded: RecordedCall
    #: the fresh id the replayed call connected under
    call_id: str
    record: CallRecord


@dataclass(slots=True)
class ReplayRun:
    calls: list[PlayedCall] = field(default_factory=list)
    duration_s: float = 0.0
    #: the replaying process: CPU and event-loop lag while the calls played
    client: ProcessStats | None = None
    #: caller frames sent, for the client's cost per turn
    frames_sent: int = 0


async def replay_calls(calls: Sequence[RecordedCall], options: ReplayOptions) -> ReplayRun:
    """Play every call; the result lists them in the order given. The garbage collector
    is tuned while it lasts, as for a simulator run (``Simulation.run``): a full
    collection over the recordings would stall every call's timing by 100-200 ms."""
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)
    try:
        return await _replay_calls(calls, options)
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


async def _replay_calls(calls: Sequence[RecordedCall], options: ReplayOptions) -> ReplayRun:
    sim = options.sim_options()
    metrics = RunMetrics(sim.violation_samples)
    slots = asyncio.Semaphore(options.concurrency)
    rng = random.Random(0)
    cpu = CpuMeter()
    lag = asyncio.create_task(measure_loop_lag(metrics.loop_lag, sim.lag_interval_s))
    started = time.perf_counter()

    async def play(recorded: RecordedCall) -> PlayedCall:
        async with slots:
            call_id = new_id()
            call = SimulatedCall(
                sim,
                metrics,
                call_id,
                call_details(recorded, call_id),
                script(recorded, options.speed),
                random.Random(rng.getrandbits(64)),
            )
            return PlayedCall(recorded, call_id, await call.run())

    try:
        played = await asyncio.gather(*(play(c) for c in calls))
    finally:
        lag.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await lag
    return ReplayRun(
        calls=list(played),
        duration_s=time.perf_counter() - started,
        client=cpu.stats(metrics.loop_lag),
        frames_sent=metrics.frames_sent,
    )

"""A simulator run: many simulated calls at once, and the ``RunReport`` they add up to.

Who calls: every scenario once (each is a conversation test), plus ``calls`` random
callers. Without ``duration_s`` each random caller places one call; with it, each places
call after call until the time is up, then hangs up at the end of its current turn, so
``calls`` is the number of concurrent calls held. Starts are spread evenly over
``ramp_ms``.

The run judges nothing: ``verdict.judge`` turns the report into pass/fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import random
import signal
import time
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any

from rich.console import Console

from switchboard.sim.call_object import call_object, new_id
from switchboard.sim.caller import SimulatedCall
from switchboard.sim.conversation import CallerTurn, random_script
from switchboard.sim.display import LiveView
from switchboard.sim.lag import CpuMeter, measure_loop_lag
from switchboard.sim.metrics import RunMetrics
from switchboard.sim.options import SimOptions
from switchboard.sim.results import ProcessStats, RunReport, ScenarioResult
from switchboard.sim.scenario import Scenario, check, load_scenarios

#: Random calls placed when neither ``calls`` nor a scenario is given.
DEFAULT_CALLS = 10
#: Garbage-collector thresholds during a run (see ``Simulation.run``).
GC_THRESHOLD = (10_000, 20, 10)
#: Failures kept per scenario in the report (the count of calls is always exact).
MAX_SCENARIO_FAILURES = 20


class Simulation:
    """One run. ``stop()`` ends it early: callers hang up at the end of their turn."""

    def __init__(self, options: SimOptions, scenarios: list[Scenario] | None = None) -> None:
        self.options = options
        if scenarios is None:
            scenarios = load_scenarios(options.scenario) if options.scenario else []
        self.scenarios = scenarios
        self.random_callers = (
            options.calls if options.calls is not None else (0 if scenarios else DEFAULT_CALLS)
        )
        self.metrics = RunMetrics(options.violation_samples)
        self.stopping = asyncio.Event()
        self._rng = random.Random(options.seed)
        self._agent_id = new_id()
        self._scenario_failures: dict[str, list[str]] = {s.name: [] for s in scenarios}
        #: every call placed, so a run's calls can be found in what the servers recorded
        self.call_ids: list[str] = []

    def stop(self) -> None:
        self.stopping.set()

    @property
    def planned(self) -> str:
        """How many calls the run will place, for the live display."""
        total = len(self.scenarios) + self.random_callers
        return f"{total} concurrent" if self.options.duration_s else f"{total}"

    async def run(self, console: Console | None = None) -> RunReport:
        """Place every call and return the report.

        The garbage collector is tuned while it lasts, because its pauses stall the event
        loop and would show up as server latency (and as stale frames): the objects alive
        before the run are frozen out of it (a full collection over them took tens of
        ms), and young collections run every ``GC_THRESHOLD[0]`` allocations instead of
        700 (each one is barely longer, so there are far fewer pauses in total).
        """
        threshold = gc.get_threshold()
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLD)
        try:
            return await self._run(console)
        finally:
            gc.set_threshold(*threshold)
            gc.unfreeze()

    async def _run(self, console: Console | None) -> RunReport:
        o = self.options
        started_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        m = self.metrics
        m.started = time.perf_counter()
        cpu = CpuMeter()
        lag = asyncio.create_task(measure_loop_lag(m.loop_lag, o.lag_interval_s))
        slots: list[Callable[[], Coroutine[Any, Any, None]]] = [
            functools.partial(self._scenario_caller, s) for s in self.scenarios
        ]
        slots += [self._random_caller] * self.random_callers
        ramp_s = o.ramp_ms / 1000.0
        timer = None
        if o.duration_s is not None:
            timer = asyncio.get_running_loop().call_later(o.duration_s, self.stop)
        view: contextlib.AbstractContextManager[Any] = (
            LiveView(m, self.planned, console) if console is not None else contextlib.nullcontext()
        )
        try:
            with view:
                await asyncio.gather(
                    *(
                        self._after(ramp_s * i / max(len(slots), 1), slot)
                        for i, slot in enumerate(slots)
                    )
                )
        finally:
            if timer is not None:
                timer.cancel()
            lag.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await lag
        return self.report(started_at, m, cpu.stats(m.loop_lag))

    async def _after(self, delay: float, slot: Callable[[], Coroutine[Any, Any, None]]) -> None:
        if delay:
            await asyncio.sleep(delay)
        await slot()

    def _new_call(
        self, script: Sequence[CallerTurn], dynamic_variables: dict[str, str] | None, stop: bool
    ) -> SimulatedCall:
        rng = random.Random(self._rng.getrandbits(64))
        call_id = new_id()
        self.call_ids.append(call_id)
        return SimulatedCall(
            self.options,
            self.metrics,
            call_id,
            call_object(call_id, self._agent_id, rng, dynamic_variables),
            script,
            rng,
            self.stopping if stop else None,
        )

    async def _random_caller(self) -> None:
        o = self.options
        while not self.stopping.is_set():
            rng = random.Random(self._rng.getrandbits(64))
            script = random_script(rng, o.turns, o.barge_in_rate, o.reminder_rate)
            await self._new_call(script, None, stop=True).run()
            if o.duration_s is None:
                return

    async def _scenario_caller(self, scenario: Scenario) -> None:
        call = self._new_call(scenario.turns, scenario.dynamic_variables, stop=False)
        record = await call.run()
        kept = self._scenario_failures[scenario.name]
        for failure in check(scenario, record):
            self.metrics.violation(
                "expectation_failed", record.call_id, f"{scenario.name}: {failure}"
            )
            if len(kept) < MAX_SCENARIO_FAILURES:
                kept.append(failure)

    def report(self, started_at: str, m: RunMetrics, client: ProcessStats) -> RunReport:
        """The report of what ``m`` measured (one run's, or its workers' merged)."""
        o = self.options
        duration = m.elapsed()
        return RunReport(
            label=o.label,
            url=o.url,
            started_at=started_at,
            duration_s=round(duration, 3),
            profile=o.profile,
            budget_ms=o.effective_budget_ms,
            options=o.as_report_dict(),
            calls_started=m.calls_started,
            calls_completed=m.calls_completed,
            calls_failed=dict(m.calls_failed),
            calls_ended=dict(m.calls_ended),
            reconnects=m.reconnects,
            reconnects_by_cause=dict(m.reconnects_by_cause),
            calls_reconnected=m.calls_reconnected,
            calls_resumed=m.calls_resumed,
            reconnect_events=list(m.reconnect_events),
            loss_to_answer=m.loss_to_answer.summary(),
            turns=m.turns,
            turns_per_s=round(m.turns / duration, 2) if duration > 0 else 0.0,
            per_kind=m.kind_stats(),
            connect=m.connect.summary(),
            greeting=m.greeting.summary(),
            pong_rtt=m.pong_rtt.summary(),
            violations=dict(m.violations),
            violation_samples=list(m.violation_samples),
            stale_in_grace=m.stale_in_grace,
            frames_dropped=m.frames_dropped,
            frames_sent=m.frames_sent,
            frames_received=m.frames_received,
            server_messages=dict(m.server_messages),
            scenarios=[
                ScenarioResult(name=name, passed=not failures, failures=failures)
                for name, failures in self._scenario_failures.items()
            ],
            client=client,
        )


async def simulate(options: SimOptions, console: Console | None = None) -> RunReport:
    """Run the simulator in the running event loop (``console``: show live progress there)."""
    return await Simulation(options).run(console)


def run_simulation(options: SimOptions, console: Console | None = None) -> RunReport:
    """Run the simulator in a fresh event loop (uvloop when installed).

    The first Ctrl-C stops the run gracefully (calls hang up at the end of their turn and
    the report is still produced); a second one aborts.
    """
    return run_in_loop(Simulation(options), console)


def run_in_loop(simulation: Simulation, console: Console | None = None) -> RunReport:
    """``simulation.run`` in a fresh event loop, Ctrl-C handled as ``run_simulation`` says."""

    async def main() -> RunReport:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def on_sigint() -> None:
            if simulation.stopping.is_set():
                task.cancel()
            simulation.stop()

        previous = signal.getsignal(signal.SIGINT)
        try:
            loop.add_signal_handler(signal.SIGINT, on_sigint)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            return await simulation.run(console)
        try:
            return await simulation.run(console)
        finally:
            loop.remove_signal_handler(signal.SIGINT)
            if previous is not None:
                signal.signal(signal.SIGINT, previous)

    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        try:
            return runner.run(main())
        except asyncio.CancelledError:
            raise KeyboardInterrupt from None


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory

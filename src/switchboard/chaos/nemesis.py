"""The nemesis: carries out a fault schedule against the cluster's processes.

It runs in its own thread, beside the event loop that plays the calls, because its work
blocks (waiting for a drained node to exit, for a restarted one to be ready) and the calls
must not stall meanwhile. Faults run one at a time, each at its scheduled instant or as
soon as the previous one is over; every fault is recorded with when it began and when it
was over (the process ready again, the pause lifted), and a fault that could not be
carried out is recorded as such, never skipped silently.

A kill mid-turn uses the generator's tripwire: the kill is sent from the event loop's
thread right after a request of a call that the target node owns (read from the
directory in Redis) is written, so the node dies with a turn in its hands. A kill after
a reply is sent the moment that reply's ``content_complete`` is read: the node is then
between ``content_complete`` and its save, or just past it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import redis

from switchboard.chaos.generator import Generator, Tripwire
from switchboard.chaos.history import FaultEvent
from switchboard.chaos.processes import ClusterProcess, ProcessError, delete_valkey_data
from switchboard.chaos.schedule import ScheduledFault

#: A node draining on SIGTERM may take its drain timeout; this bounds the wait.
EXIT_DEADLINE_S = 90.0
READY_DEADLINE_S = 60.0
#: How long a mid-turn kill waits for a turn on its target before taking any turn.
TRIPWIRE_WAIT_S = 5.0
OWNER_REFRESH_S = 0.2


class Nemesis:
    def __init__(
        self,
        processes: dict[str, ClusterProcess],
        generator: Generator,
        loop: asyncio.AbstractEventLoop,
        *,
        log_dir: Path,
        redis_url: str | None,
        namespace: str = "switchboard:",
        log: Callable[[str], None] = lambda _: None,
    ) -> None:
        self.processes = processes
        self.generator = generator
        self.loop = loop
        self.log_dir = log_dir
        self.redis_url = redis_url
        self.namespace = namespace
        self.log = log
        self.events: list[FaultEvent] = []
        self.stopping = threading.Event()

    def run(self, schedule: list[ScheduledFault], t0: float) -> None:
        """Every fault of ``schedule`` (times from the wall-clock ``t0``), in order."""
        for fault in schedule:
            delay = t0 + fault.at_s - time.time()
            if delay > 0 and self.stopping.wait(delay):
                return
            self.log(f"fault: {fault.kind} on {fault.target}")
            event = FaultEvent(
                kind=fault.kind, target=fault.target, param=fault.param, started_at=time.time()
            )
            self.events.append(event)
            try:
                self._carry_out(fault, event)
            except (ProcessError, OSError, RuntimeError) as exc:
                event.ok = False
                event.detail = str(exc)
                self.log(f"fault {fault.kind} on {fault.target} failed: {exc}")

    def _carry_out(self, fault: ScheduledFault, event: FaultEvent) -> None:
        kind = fault.kind
        if kind in ("kill", "kill-mid-turn", "kill-after-reply", "service-kill"):
            target = self.processes[fault.target]
            if kind in ("kill-mid-turn", "kill-after-reply"):
                self._kill_on_tripwire(
                    target, event, "reply" if kind == "kill-after-reply" else "request"
                )
            else:
                self._began(event)
                target.signal(signal.SIGKILL)
            self._restart(target, event)
        elif kind == "term":
            target = self.processes[fault.target]
            self._began(event)
            target.signal(signal.SIGTERM)
            self._restart(target, event)
        elif kind == "redis-restart":
            target = self.processes["redis"]
            self._began(event)
            target.signal(signal.SIGKILL)
            target.wait_gone(EXIT_DEADLINE_S)
            removed = delete_valkey_data(target)
            event.detail = f"removed {len(removed)} data files" if removed else "no data files"
            self._restart(target, event)
        elif kind in ("redis-pause", "bus-stop"):
            target = self.processes["redis" if kind == "redis-pause" else "bus"]
            self._began(event)
            target.signal(signal.SIGSTOP)
            try:
                self.stopping.wait(fault.param or 0.0)
            finally:
                target.signal(signal.SIGCONT)
            event.ended_at = time.time()
        elif kind == "haproxy-restart":
            target = self.processes["haproxy"]
            self._began(event)
            target.signal(signal.SIGKILL)
            self._restart(target, event)
        elif kind == "hangup":
            self._hang_up(int(fault.param or 1), event)
        else:  # pragma: no cover - the schedule only holds known kinds
            raise RuntimeError(f"unknown fault {kind}")

    def _began(self, event: FaultEvent) -> None:
        event.started_at = time.time()
        event.turns_in_flight = self.generator.turns_in_flight()

    def _restart(self, target: ClusterProcess, event: FaultEvent) -> None:
        target.wait_gone(EXIT_DEADLINE_S)
        target.start_again(self.log_dir)
        target.wait_ready(READY_DEADLINE_S)
        event.ended_at = time.time()
        self.log(f"{target.name} restarted as pid {target.pid}")

    def _hang_up(self, count: int, event: FaultEvent) -> None:
        future = asyncio.run_coroutine_threadsafe(self._hang_up_in_loop(count), self.loop)
        hung = future.result(timeout=10.0)
        event.started_at = event.ended_at = time.time()
        event.detail = f"hung up {len(hung)} calls"

    async def _hang_up_in_loop(self, count: int) -> list[str]:
        return self.generator.hang_up(count)

    def _kill_on_tripwire(self, target: ClusterProcess, event: FaultEvent, on: str) -> None:
        """SIGKILL right after a request of a call ``target`` owns is written (``on`` is
        ``"request"``), or the moment its reply's ``content_complete`` is read
        (``"reply"``: the node is between ``content_complete`` and its save); after
        ``TRIPWIRE_WAIT_S`` without one, on any call's."""
        fired = threading.Event()

        def fire() -> None:
            with contextlib.suppress(ProcessError):
                target.signal(signal.SIGKILL)
            event.started_at = time.time()
            event.turns_in_flight = self.generator.turns_in_flight()
            fired.set()

        owned: set[str] = set()
        wire = Tripwire(wants=lambda call_id: call_id in owned, fire=fire, on=on)
        self.loop.call_soon_threadsafe(self.generator.arm, wire)
        deadline = time.monotonic() + TRIPWIRE_WAIT_S
        with self._owners() as owners:
            while not fired.wait(OWNER_REFRESH_S):
                if self.stopping.is_set():
                    break
                if time.monotonic() > deadline:
                    event.detail = f"no turn on {target.name} in {TRIPWIRE_WAIT_S:g} s: any turn"
                    self.loop.call_soon_threadsafe(
                        self.generator.arm, Tripwire(wants=lambda _: True, fire=fire, on=on)
                    )
                    fired.wait(TRIPWIRE_WAIT_S)
                    break
                owned.clear()
                owned.update(owners(target.name))
        self.loop.call_soon_threadsafe(self.generator.arm, None)
        if not fired.is_set():
            self._began(event)
            target.signal(signal.SIGKILL)
            event.detail = "no turn in flight: killed between turns"

    @contextlib.contextmanager
    def _owners(self) -> Iterator[Callable[[str], list[str]]]:
        """A function: the live calls the node owns now, per the directory in Redis."""
        if self.redis_url is None:
            yield lambda _: []
            return
        client = redis.Redis.from_url(
            self.redis_url, socket_timeout=0.5, socket_connect_timeout=0.5
        )

        def owned_by(node: str) -> list[str]:
            ids = self.generator.live_call_ids()
            try:
                with client.pipeline(transaction=False) as pipe:
                    for call_id in ids:
                        pipe.hget(f"{self.namespace}call:{call_id}", "owner")
                    owners = pipe.execute()
            except redis.RedisError:
                return []
            return [
                c for c, o in zip(ids, owners, strict=True) if o is not None and o.decode() == node
            ]

        try:
            yield owned_by
        finally:
            client.close()

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

The event pipeline's faults: ``archive-stop`` stops the archive service (SIGSTOP) long
enough for the stream to pass its trim threshold, then resumes it; ``poison`` writes one
undecodable event straight onto the bus; ``oversized`` places a call of its own whose
caller line is far above the event size cap; ``kill-while-spilling`` stops the bus,
waits until a node's outbox is spilling (its ``/metrics`` says so), kills that node with
SIGKILL, starts the bus again after N s and then the node.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import redis

from switchboard.chaos.generator import Generator, Tripwire
from switchboard.chaos.history import FaultEvent
from switchboard.chaos.processes import ClusterProcess, ProcessError, delete_valkey_data
from switchboard.chaos.schedule import ScheduledFault
from switchboard.connections import blocking_redis_client
from switchboard.events.buses import open_bus
from switchboard.events.codec import CONTENT_TYPE, SPEC_VERSION, BusMessage
from switchboard.sim.conversation import CallerTurn

#: A node draining on SIGTERM may take its drain timeout; this bounds the wait.
EXIT_DEADLINE_S = 90.0
READY_DEADLINE_S = 60.0
#: How long a mid-turn kill waits for a turn on its target before taking any turn.
TRIPWIRE_WAIT_S = 5.0
OWNER_REFRESH_S = 0.2
#: How long ``kill-while-spilling`` waits for its node to spill, and an ``archive-stop``
#: past its length for the stream to pass its trim threshold.
SPILL_WAIT_S = 30.0
TRIM_WAIT_S = 30.0
POLL_S = 0.05
#: The ``oversized`` caller's line: far above the 16,384 characters a turn event keeps;
#: its request frame (which carries the line twice: as the content and in the word
#: timings) stays under the node's 1 MiB frame limit.
OVERSIZED_CHARS = 300_000
#: The ``poison`` message: a turn event by its headers whose value is not UTF-8.
POISON_VALUE = b'{"response_id": 1, "kind": "response", "caller_line": "\xff\xfe"}'
_SPILLING = re.compile(rb"^switchboard_outbox_spilling\s+([0-9.]+)", re.MULTILINE)


def poison_message(key: str) -> BusMessage:
    """One message every consumer parks: a ``call.turn_completed`` by its headers whose
    value is not UTF-8."""
    headers = (
        ("ce_specversion", SPEC_VERSION),
        ("ce_id", key.encode()),
        ("ce_type", b"call.turn_completed"),
        ("ce_source", b"chaos/poison"),
        ("ce_time", b"2026-01-01T00:00:00+00:00"),
        ("ce_schemaversion", b"1"),
        ("content-type", CONTENT_TYPE),
    )
    return BusMessage(key.encode(), headers, POISON_VALUE)


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
        bus_url: str | None = None,
        bus_max_len: int | None = None,
        on_restart: Callable[[], None] = lambda: None,
    ) -> None:
        self.processes = processes
        #: called after each restart, so the state file names the new pid at once: a run
        #: that dies half-way must not leave a process nobody knows to stop
        self.on_restart = on_restart
        self.generator = generator
        self.loop = loop
        self.log_dir = log_dir
        self.redis_url = redis_url
        self.namespace = namespace
        self.log = log
        self.bus_url = bus_url
        self.bus_max_len = bus_max_len
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
        elif kind == "archive-stop":
            self._archive_stop(fault.param or 0.0, event)
        elif kind == "poison":
            self._poison(event)
        elif kind == "oversized":
            self._oversized(event)
        elif kind == "kill-while-spilling":
            self._kill_while_spilling(self.processes[fault.target], fault.param or 0.0, event)
        else:  # pragma: no cover - the schedule only holds known kinds
            raise RuntimeError(f"unknown fault {kind}")

    def _began(self, event: FaultEvent) -> None:
        event.started_at = time.time()
        event.turns_in_flight = self.generator.turns_in_flight()

    def _restart(self, target: ClusterProcess, event: FaultEvent) -> None:
        target.wait_gone(EXIT_DEADLINE_S)
        target.start_again(self.log_dir)
        self.on_restart()
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

    # ---------------------------------------------------------------- event pipeline

    def _archive_stop(self, seconds: float, event: FaultEvent) -> None:
        """SIGSTOP the archive for ``seconds``, and on a Redis stream past that until the
        stream holds more than ``bus_max_len`` entries (the trim threshold), then SIGCONT."""
        target = self.processes["archive"]
        self._began(event)
        target.signal(signal.SIGSTOP)
        try:
            self.stopping.wait(seconds)
            length = self._stream_length()
            if length is not None and self.bus_max_len is not None:
                deadline = time.monotonic() + TRIM_WAIT_S
                while length is not None and length <= self.bus_max_len:
                    if time.monotonic() > deadline or self.stopping.wait(POLL_S * 4):
                        break
                    length = self._stream_length()
                event.figures["bus_max_len"] = float(self.bus_max_len)
            if length is not None:
                event.figures["stream_entries"] = float(length)
        finally:
            target.signal(signal.SIGCONT)
        event.ended_at = time.time()
        if "stream_entries" in event.figures:
            event.detail = (
                f"stream at {event.figures['stream_entries']:.0f} entries when resumed"
                + (f" (bus_max_len {self.bus_max_len})" if self.bus_max_len else "")
            )

    def _stream_length(self) -> int | None:
        """Entries in the Redis stream bus, or ``None`` (a Kafka bus, or no answer)."""
        if not self.bus_url or not self.bus_url.startswith(("redis://", "rediss://")):
            return None
        client = blocking_redis_client(self.bus_url, timeout_ms=1000)
        try:
            return int(client.xlen(f"{self.namespace}events"))
        except redis.RedisError:
            return None
        finally:
            client.close()

    def _poison(self, event: FaultEvent) -> None:
        """One undecodable message written straight onto the bus, as a foreign writer
        would; every service must park it and go on."""
        if not self.bus_url:
            raise RuntimeError("the cluster has no bus")
        key = f"chaos-poison-{int(time.time() * 1000)}"
        bus_url = self.bus_url

        async def send() -> None:
            bus = open_bus(bus_url, namespace=self.namespace)
            try:
                await bus.send([poison_message(key)])
            finally:
                await bus.close()

        self._began(event)
        asyncio.run(send())
        event.ended_at = time.time()
        event.call_id = key
        event.detail = f"one undecodable call.turn_completed on the bus, key {key}"

    def _oversized(self, event: FaultEvent) -> None:
        """A call of the nemesis's own whose one caller line is ``OVERSIZED_CHARS`` long:
        it must be answered, and archived once with its line cut to the cap."""
        # Few words: the simulator streams a line as one update_only frame per word,
        # each with the whole line so far.
        head = "Hello, I have a long question about "
        line = head + "la" * ((OVERSIZED_CHARS - len(head)) // 2)
        self._began(event)
        future = asyncio.run_coroutine_threadsafe(
            self.generator.extra_call([CallerTurn(say=line)]), self.loop
        )
        call_id, answered, reason = future.result(timeout=120.0)
        event.ended_at = time.time()
        event.call_id = call_id
        event.answered = answered
        event.figures["caller_line_chars"] = float(len(line))
        event.detail = f"call {call_id}: {len(answered)} turn answered, ended with {reason}"
        if not answered:
            event.ok = False
            event.detail = f"the oversized turn was not answered (call {call_id}: {reason})"

    def _kill_while_spilling(
        self, target: ClusterProcess, seconds: float, event: FaultEvent
    ) -> None:
        """Stop the bus, wait until ``target``'s outbox spills (its ``/metrics``), SIGKILL
        it, start the bus again ``seconds`` after it stopped, then start the node again."""
        bus = self.processes["bus"]
        self._began(event)
        bus.signal(signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            spilling = self._wait_spilling(target)
            if spilling:
                event.figures["seconds_to_spill"] = round(time.monotonic() - stopped, 3)
                event.figures["spill_bytes"] = float(self._spill_bytes(target))
                event.turns_in_flight = self.generator.turns_in_flight()
                target.signal(signal.SIGKILL)
            rest = seconds - (time.monotonic() - stopped)
            if rest > 0:
                self.stopping.wait(rest)
        finally:
            bus.signal(signal.SIGCONT)
        if not spilling:
            event.ok = False
            event.detail = f"{target.name} was not spilling within {SPILL_WAIT_S:g} s"
            event.ended_at = time.time()
            return
        event.detail = (
            f"killed while spilling ({event.figures['spill_bytes']:.0f} bytes in its spill file)"
        )
        self._restart(target, event)

    def _wait_spilling(self, target: ClusterProcess) -> bool:
        """Until the node's ``/metrics`` says its outbox is spilling (``False`` after
        ``SPILL_WAIT_S``)."""
        url = f"http://127.0.0.1:{target.port}/metrics"
        deadline = time.monotonic() + SPILL_WAIT_S
        with httpx.Client(timeout=2.0, trust_env=False) as client:
            while time.monotonic() < deadline and not self.stopping.is_set():
                with contextlib.suppress(httpx.HTTPError):
                    match = _SPILLING.search(client.get(url).content)
                    if match and float(match.group(1)) >= 1:
                        return True
                time.sleep(POLL_S)
        return False

    @staticmethod
    def _spill_bytes(target: ClusterProcess) -> int:
        directory = target.env.get("SWITCHBOARD_OUTBOX_DIR")
        if not directory:
            return -1
        try:
            return (Path(target.cwd) / directory / "outbox.spill").stat().st_size
        except OSError:
            return -1

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
        client = blocking_redis_client(self.redis_url, timeout_ms=500)

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

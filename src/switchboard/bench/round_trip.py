"""What one Redis round trip costs an otherwise idle node, in CPU.

``python -m switchboard.bench.round_trip [--rate R] [--duration S]``. At the bench's load a
node is idle most of the time: a turn wakes it, and in the distributed profile the turn's
save sends it back to sleep until Redis answers, then wakes it once more. That second
wake-up is the floor of what a save costs the node, whatever the code around it does, so
it bounds how close the distributed profile can come to the single one (docs/scale.md,
"The round trip's floor").

This measures it alone. A child process pinned to core 0 runs uvloop, woken ``rate``
times a second by its own timer; at each wake-up it either does nothing (``idle``) or
writes one ``PING`` to valkey-server and waits for the reply (``ping``). valkey runs on
the child's core, on the other core, or where the scheduler puts it. The figure is the
child's user and system CPU per wake-up (``getrusage``); ``ping`` less ``idle`` is the
round trip. A benchmark, not a test: run it on quiet cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import msgspec
import psutil

from switchboard.cluster.processes import pin_prefix
from switchboard.cluster.valkey import start_valkey

#: the bench's turn rate at ``distributed-100``
DEFAULT_RATE = 374.0
_PING = b"*1\r\n$4\r\nPING\r\n"


class Wakeups(msgspec.Struct, frozen=True):
    """One child's run: how many wake-ups, and the CPU they cost."""

    mode: str
    wakeups: int
    replies: int
    user_us: float
    system_us: float
    voluntary_switches: int

    @property
    def cpu_us(self) -> float:
        return self.user_us + self.system_us


class _Replies(asyncio.Protocol):
    def __init__(self) -> None:
        self.waiting: asyncio.Future[None] | None = None
        self.count = 0

    def data_received(self, data: bytes) -> None:
        self.count += data.count(b"\r\n")  # "+PONG\r\n": one line a reply
        if self.waiting is not None and not self.waiting.done():
            self.waiting.set_result(None)


async def wake(mode: str, port: int, rate: float, duration_s: float) -> Wakeups:
    """Wake ``rate`` times a second for ``duration_s``; at each wake-up, one ``PING`` to
    ``port`` and its reply if ``mode`` is ``ping``. The CPU is this process's own."""
    loop = asyncio.get_running_loop()
    transport, replies = await loop.create_connection(_Replies, "127.0.0.1", port)
    wakeups = 0
    try:
        before = resource.getrusage(resource.RUSAGE_SELF)
        due = start = loop.time()
        while due - start < duration_s:
            due += 1 / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if mode == "ping":
                replies.waiting = loop.create_future()
                transport.write(_PING)
                await replies.waiting
            wakeups += 1
        after = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        transport.close()
    return Wakeups(
        mode=mode,
        wakeups=wakeups,
        replies=replies.count,
        user_us=(after.ru_utime - before.ru_utime) * 1e6 / wakeups,
        system_us=(after.ru_stime - before.ru_stime) * 1e6 / wakeups,
        voluntary_switches=after.ru_nvcsw - before.ru_nvcsw,
    )


def _child(mode: str, port: int, rate: float, duration_s: float) -> Wakeups:
    argv = [sys.executable, "-m", "switchboard.bench.round_trip", "--child", mode]
    argv += ["--port", str(port), "--rate", str(rate), "--duration", str(duration_s)]
    out = subprocess.run([*pin_prefix(0), *argv], check=True, capture_output=True, text=True)
    return msgspec.json.decode(out.stdout, type=Wakeups)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=DEFAULT_RATE)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--child", choices=("idle", "ping"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        import uvloop

        result = uvloop.run(wake(args.child, args.port, args.rate, args.duration))
        print(json.dumps(msgspec.to_builtins(result)))
        return 0
    cores = os.cpu_count() or 1
    placements = {
        "on the node's core": [0],
        "on the other core": [1],
        "where the scheduler puts it": list(range(cores)),
    }
    if cores < 2:
        placements = {"on the node's core": [0]}
    with tempfile.TemporaryDirectory(prefix="switchboard-round-trip-") as tmp:
        valkey = start_valkey(log_dir=Path(tmp), persistent=False)
        assert valkey.port is not None
        try:
            for where, cpus in placements.items():
                psutil.Process(valkey.pid).cpu_affinity(cpus)
                idle = _child("idle", valkey.port, args.rate, args.duration)
                ping = _child("ping", valkey.port, args.rate, args.duration)
                extra = ping.cpu_us - idle.cpu_us
                print(
                    f"valkey {where}: idle {idle.cpu_us:.1f} us a wake-up "
                    f"(user {idle.user_us:.1f}, sys {idle.system_us:.1f}); with a round trip "
                    f"{ping.cpu_us:.1f} us (user {ping.user_us:.1f}, sys {ping.system_us:.1f}); "
                    f"the round trip: {extra:+.1f} us"
                )
        finally:
            valkey.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

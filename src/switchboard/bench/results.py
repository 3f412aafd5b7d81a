"""What a bench run leaves: one result per case, the run with its host and settings, and the
JSON file it is written to and read back from (``bench/results/``).
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from switchboard.bench.cases import BenchCase
from switchboard.sim.resources import ServerResources
from switchboard.sim.results import RunReport

BENCH_SCHEMA_VERSION = 1


class BenchCaseResult(msgspec.Struct, kw_only=True):
    case: BenchCase
    simulator_exit_code: int
    report: RunReport
    #: the server's RSS and file descriptors before, during and after the run
    resources: ServerResources | None = None
    #: targets the case missed, as sentences (empty: all met)
    missed_targets: list[str] = msgspec.field(default_factory=list)
    #: event-driven cases: turn completed -> archived, ms (``archived``, ``p50``, ``p99``)
    event_latency_ms: dict[str, float] | None = None
    #: the server's cache counters from ``/metrics`` (hits/misses by tier, hit p99 bound)
    cache: dict[str, float] = msgspec.field(default_factory=dict)
    #: the server's event-loop lag and GC pauses from ``/metrics`` (``loop_health``)
    server_loop: dict[str, float] = msgspec.field(default_factory=dict)
    #: the chaos case: the chaos report's figures, one line each
    chaos: list[str] = msgspec.field(default_factory=list)


class BenchRun(msgspec.Struct, kw_only=True):
    schema_version: int = BENCH_SCHEMA_VERSION
    started_at: str
    #: where it ran: cores, Python, whether server and simulator were pinned
    host: dict[str, object] = msgspec.field(default_factory=dict)
    #: the knobs shared by every case (duration, turns, think time)
    settings: dict[str, object] = msgspec.field(default_factory=dict)
    results: list[BenchCaseResult] = msgspec.field(default_factory=list)
    #: cases that could not run at all (a child failed to start), with why
    errors: dict[str, str] = msgspec.field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """Every case ran and passed its verdict (targets are reported, not required)."""
        return not self.errors and all(r.report.passed for r in self.results)


def write_run(run: BenchRun, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(msgspec.json.format(msgspec.json.encode(run), indent=2))
    os.replace(tmp, path)


def load_bench(path: Path) -> BenchRun:
    """Read a bench JSON file back (e.g. to compare with a reference run)."""
    return msgspec.json.decode(path.read_bytes(), type=BenchRun)

"""A run as ``switchboard simulate`` makes it: in one process or split across workers,
judged, with what the server's own ``/metrics`` say about the same run (its cache
counters and where its turns spent their time) attached to the report.

The server's histograms are read before and after the run, so the breakdown is of this
run's turns alone, whatever the server served before.
"""

from __future__ import annotations

import msgspec
from rich.console import Console

from switchboard.sim.options import SimOptions
from switchboard.sim.results import RunReport
from switchboard.sim.runner import run_simulation
from switchboard.sim.server_metrics import (
    cache_counters,
    metrics_url,
    segment_buckets,
    turn_breakdown,
)
from switchboard.sim.verdict import judge


def run_judged(options: SimOptions, workers: int = 1, live: Console | None = None) -> RunReport:
    """Play the run (``live``: the console for the live display, one process only) and
    return the judged report with the server's cache counters and turn breakdown."""
    url = metrics_url(options.url)
    before = segment_buckets(url)
    if workers > 1:
        from switchboard.sim.workers import run_workers

        result = judge(run_workers(options, workers))
    else:
        result = judge(run_simulation(options, live))
    timings = turn_breakdown(before, segment_buckets(url))
    return msgspec.structs.replace(result, cache=cache_counters(url), server_timings=timings)

"""The node's event-loop lag and GC pauses reach ``/metrics``, and the bench reads them."""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

import httpx

from switchboard.bench.table import describe_loop
from switchboard.sim.server_metrics import loop_health
from tests.fixtures.agents import EchoAgent
from tests.fixtures.server import TIMEOUT


async def test_a_blocked_loop_and_a_collection_show_in_metrics(serve: Any) -> None:
    async with serve(EchoAgent(), call_details=False) as srv:
        url = f"{srv.http_url}/metrics"
        lag = srv.app.node.loop_health.lag
        async with httpx.AsyncClient() as http:  # answered once the lifespan has started
            assert (await http.get(f"{srv.http_url}/healthz")).status_code == 200
        _hold_the_loop(0.4)  # the stimulus: a callback that keeps the loop for 400 ms
        gc.collect()
        async with asyncio.timeout(TIMEOUT):  # the probe records it when it next wakes
            while _count_over(lag, 0.25) == 0:
                await asyncio.sleep(0.05)
        async with httpx.AsyncClient() as http:
            text = (await http.get(url)).text
        assert "switchboard_event_loop_lag_seconds_bucket" in text
        assert 'switchboard_gc_pause_seconds_count{generation="2"}' in text
        seen = await asyncio.to_thread(loop_health, url)
        assert seen["lag_max_le_ms"] >= 500 or seen["lag_max_le_ms"] == -1
        assert seen["gc_count:2"] >= 1
        assert "server event loop lag p99" in describe_loop(seen)


def _hold_the_loop(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def _count_over(histogram: Any, seconds: float) -> float:
    samples = [s for s in histogram.collect()[0].samples if s.name.endswith("_bucket")]
    below = max((s.value for s in samples if float(s.labels["le"]) <= seconds), default=0.0)
    total = max((s.value for s in samples), default=0.0)
    return total - below


def test_an_unreachable_server_gives_no_loop_figures() -> None:
    assert loop_health("http://127.0.0.1:9/metrics", timeout_s=0.5) == {}

"""The error table's slow-LLM row: with the response cache on, cached answers keep the budget.

The cache is on when the nodes' ``/metrics`` carry ``switchboard_cache_*`` counters. The
check asks a receptionist's common questions once each (so the cache can store the
replies), then asks them again, one turn at a time, reading the nodes' hit counters
before and after every turn: a turn whose counter moved was answered from the cache, so
its TTFB, measured here as Retell sees it, is a cached answer's. Turns run one at a time
so that attribution is exact; a hit on a node whose ``/metrics`` is not read (behind a
load balancer, against a URL) counts as uncached, never as a cached pass.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field

import msgspec
from websockets.exceptions import WebSocketException

from switchboard.protocol.outbound import Response
from switchboard.sim.frames import decode_server_frame
from switchboard.sim.server_metrics import cache_counters, metrics_url
from switchboard.validate.probes import (
    ANSWER_TIMEOUT_S,
    ProbeError,
    open_call,
)
from switchboard.validate.report import Check
from switchboard.validate.target import Target

NAME = "slow LLM: cached answers"
#: Caller lines the cache can serve: no digits, names or tool words (docs/cache.md).
FAQ_LINES: tuple[str, ...] = (
    "What are your opening hours?",
    "Where are you located?",
    "Is there parking nearby?",
    "Do you take walk-ins?",
    "How much does a consultation cost?",
    "What time do you close today?",
)
#: How long the replies asked once may take to be stored before they are asked again.
STORE_DEADLINE_S = 15.0


def metrics_urls(target: Target) -> list[str]:
    if target.is_cluster:
        return [f"http://127.0.0.1:{n.port}/metrics" for n in target.nodes]
    return [metrics_url(target.url)]


async def read_counters(urls: list[str]) -> dict[str, float] | None:
    """The nodes' cache counters summed; ``None`` when no node exposes any (cache off)."""
    found = await asyncio.gather(*(asyncio.to_thread(cache_counters, u) for u in urls))
    if not any(found):
        return None
    total: dict[str, float] = {}
    for counters in found:
        for key, value in counters.items():
            if key.startswith(("hits:", "misses:", "stored", "not_stored:")):
                total[key] = total.get(key, 0.0) + value
    return total


def _sum(counters: dict[str, float], prefix: str) -> float:
    return sum(v for k, v in counters.items() if k.startswith(prefix))


@dataclass(slots=True)
class CacheRun:
    cached_ms: list[float] = field(default_factory=list)
    uncached_ms: list[float] = field(default_factory=list)
    hits: float = 0.0


async def _timed_turn(base_url: str, line: str) -> float:
    """TTFB of one caller question after the greeting: request sent -> first chunk."""
    call = await open_call(base_url)
    try:
        transcript = [
            {"role": "agent", "content": call.greeting},
            {"role": "user", "content": line},
        ]
        started = time.perf_counter()
        request = {"interaction_type": "response_required", "response_id": 1}
        await call.ws.send(msgspec.json.encode({**request, "transcript": transcript}).decode())
        first: float | None = None
        async with asyncio.timeout(ANSWER_TIMEOUT_S):
            while True:
                frame = decode_server_frame(await call.ws.recv())
                if isinstance(frame, Response) and frame.response_id == 1:
                    if first is None:
                        first = (time.perf_counter() - started) * 1000
                    if frame.content_complete:
                        return first
    finally:
        await call.ws.close()


async def _stored_all(urls: list[str], before: dict[str, float], misses: float) -> None:
    """Wait until every reply that missed has been stored or refused (a deadline, not a
    timing: past it the second pass simply finds fewer hits)."""
    deadline = time.monotonic() + STORE_DEADLINE_S
    while time.monotonic() < deadline:
        now = await read_counters(urls) or {}
        done = _sum(now, "stored") + _sum(now, "not_stored:")
        if done - _sum(before, "stored") - _sum(before, "not_stored:") >= misses:
            return
        await asyncio.sleep(0.05)


async def cache_run(target: Target, rounds: int = 2) -> CacheRun:
    urls = metrics_urls(target)
    run = CacheRun()
    before = await read_counters(urls) or {}
    for line in FAQ_LINES:
        await _timed_turn(target.url, line)
    after_warm = await read_counters(urls) or {}
    misses = _sum(after_warm, "misses:exact") - _sum(before, "misses:exact")
    await _stored_all(urls, before, misses)
    start = await read_counters(urls) or {}
    previous = _sum(start, "hits:")
    for _ in range(rounds):
        for line in FAQ_LINES:
            ttfb = await _timed_turn(target.url, line)
            hits = _sum(await read_counters(urls) or {}, "hits:")
            (run.cached_ms if hits > previous else run.uncached_ms).append(ttfb)
            previous = hits
    run.hits = previous - _sum(start, "hits:")
    return run


def _p50(values: list[float]) -> float | str:
    return round(statistics.median(values), 2) if values else "none"


async def cache_check(target: Target, budget_ms: float, require_cache: bool) -> Check | str:
    """The check, or why it does not apply (the cache is off and not required)."""
    claim = f"answers served from the response cache within {budget_ms:g} ms TTFB"
    if await read_counters(metrics_urls(target)) is None:
        if not require_cache:
            return "not applicable: cache off (no switchboard_cache_* counters in /metrics)"
        return Check(
            name=NAME,
            claim=claim,
            passed=False,
            figures={"cache": "off"},
            detail="--require-cache: the nodes' /metrics carry no switchboard_cache_* counters",
        )
    try:
        run = await cache_run(target)
    except (OSError, ProbeError, TimeoutError, WebSocketException) as exc:
        return Check(name=NAME, claim=claim, passed=False, detail=f"the probe failed: {exc!r}")
    worst = max(run.cached_ms, default=0.0)
    passed = bool(run.cached_ms) and worst <= budget_ms
    return Check(
        name=NAME,
        claim=claim,
        passed=passed,
        figures={
            "budget (ms)": budget_ms,
            "cached turns": len(run.cached_ms),
            "cached TTFB max (ms)": round(worst, 2),
            "cached TTFB p50 (ms)": _p50(run.cached_ms),
            "uncached turns": len(run.uncached_ms),
            "uncached TTFB p50 (ms)": _p50(run.uncached_ms),
            "cache hits in /metrics": int(run.hits),
        },
        detail="" if run.cached_ms else "no repeated question was answered from the cache",
    )

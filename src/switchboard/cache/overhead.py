"""What the exact tier adds to a turn that misses: ``python -m switchboard.cache.overhead``.

A turn of an instant agent is timed from ``respond`` to its first chunk, bare and wrapped
in ``CachedAgent`` (exact tier only), over lines that never repeat, so every wrapped turn
is a miss: normalising, hashing, one lookup, and the store scheduled after the reply.
Prints p50/p99 of both and of the difference, for the memory backend and, when a Redis URL
is given (``--redis-url``), for Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import AsyncIterator

from switchboard.agents.base import Action, Agent, Turn, TurnKind
from switchboard.cache.agent import CachedAgent
from switchboard.cache.base import ResponseCache
from switchboard.cache.memory import MemoryResponseCache
from switchboard.cache.policy import CachePolicy
from switchboard.cache.redis import RedisResponseCache
from switchboard.protocol.inbound import Utterance


class _Instant(Agent):
    async def respond(self, turn: Turn) -> AsyncIterator[str | Action]:
        yield "We are open from 8 AM to 6 PM."


async def _first_chunk_ns(agent: Agent, turn: Turn) -> int:
    started = time.perf_counter_ns()
    stream = agent.respond(turn)
    await anext(stream)
    elapsed = time.perf_counter_ns() - started
    async for _ in stream:
        pass
    return elapsed


def _turn(i: int) -> Turn:
    transcript = [
        Utterance("agent", "Thanks for calling. How can I help?"),
        Utterance("user", _line(i)),
    ]
    return Turn(call_id="o", kind=TurnKind.RESPONSE, response_id=1, transcript=transcript, state={})


def _line(i: int) -> str:
    # Distinct lines without digits (digits would bypass the cache as personal data).
    letters = "abcdefghijklmnopqrstuvwxyz"
    word = ""
    while True:
        word += letters[i % 26]
        i //= 26
        if not i:
            break
    return f"what about the {word} service"


def _pct(values: list[int], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] / 1e6


async def measure(cache: ResponseCache, turns: int) -> dict[str, float]:
    bare = _Instant()
    wrapped = CachedAgent(_Instant(), cache, CachePolicy(semantic=False), digest="overhead")
    plain, cached = [], []
    for i in range(turns):
        plain.append(await _first_chunk_ns(bare, _turn(i)))
        cached.append(await _first_chunk_ns(wrapped, _turn(i)))
        if i % 100 == 0:
            await wrapped.flush()
    await wrapped.flush()
    await cache.clear()
    added = [c - p for c, p in zip(cached, plain, strict=True)]
    return {
        "bare_p50_ms": _pct(plain, 50),
        "bare_p99_ms": _pct(plain, 99),
        "miss_p50_ms": _pct(cached, 50),
        "miss_p99_ms": _pct(cached, 99),
        "added_p50_ms": _pct(added, 50),
        "added_p99_ms": _pct(added, 99),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--turns", type=int, default=5000)
    parser.add_argument("--redis-url", default=None)
    parser.add_argument("--timeout-ms", type=float, default=5.0)
    options = parser.parse_args()

    async def run() -> None:
        backends: list[tuple[str, ResponseCache]] = [("memory", MemoryResponseCache())]
        if options.redis_url:
            backends.append(
                (
                    "redis",
                    RedisResponseCache.from_url(
                        options.redis_url,
                        namespace="switchboard-overhead:",
                        timeout_ms=options.timeout_ms,
                    ),
                )
            )
        for name, cache in backends:
            figures = await measure(cache, options.turns)
            shown = ", ".join(f"{k} {v:.3f}" for k, v in figures.items())
            print(f"{name}: {shown}")
            await cache.close()

    asyncio.run(run())


if __name__ == "__main__":
    main()

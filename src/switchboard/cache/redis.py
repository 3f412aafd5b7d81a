"""The Redis ``ResponseCache`` of the shared-state profiles: entries with a TTL, vector hashes.

Keys, under the deployment's ``redis_namespace``:

- ``{ns}cache:e:{key}``: one stored reply (``SET ... PX ttl``);
- ``{ns}cache:v:{table}``: a hash, entry key -> vector, one per agent digest; its TTL is
  pushed forward by every write, and a vector whose entry expired is dropped on lookup.

The cache is an optimisation, so it must never cost a turn more than a few milliseconds:
the client is built here (not shared with the call store) with no retries (redis-py's
default retry turns a dead link into seconds), every lookup carries a deadline of
``timeout_ms`` (a late answer is a miss for that turn only), and a breaker, after
``trip_after`` connection failures in a row (refused, reset: Redis is down), answers
``CacheUnavailable`` at once for ``retry_after_s`` instead of trying on every turn.
A lookup is one ``GET`` written at once from the turn's own task (batching lookups into
an ``MGET`` was measured: the extra event-loop turns before the write cost more misses
than the round trips it saved).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from switchboard.cache.base import CacheUnavailable
from switchboard.connections import redis_client

T = TypeVar("T")


#: Deadline of writes and bulk reads, which are off the turn's path.
WRITE_TIMEOUT_S = 0.5


def cache_client(url: str, timeout_ms: float) -> Redis:
    """A client that never retries; lookups are bounded by their own deadline on top.
    When every connection is busy (a burst of stores) a command waits for one."""
    timeout_ms = max(timeout_ms, WRITE_TIMEOUT_S * 1000)
    return redis_client(
        url, timeout_ms=timeout_ms, retries=0, max_connections=32, pool_wait_ms=timeout_ms
    )


class RedisResponseCache:
    name = "redis"

    def __init__(
        self,
        client: Redis,
        *,
        namespace: str = "switchboard:",
        timeout_ms: float = 5.0,
        retry_after_s: float = 1.0,
        trip_after: int = 10,
        owns_client: bool = True,
    ) -> None:
        self._redis = client
        self._prefix = f"{namespace}cache:"
        self._timeout_s = timeout_ms / 1000
        self._retry_after_s = retry_after_s
        self._down_until = 0.0
        self._trip_after = trip_after
        self._failures = 0
        self._owns_client = owns_client

    @classmethod
    def from_url(
        cls, url: str, *, namespace: str = "switchboard:", timeout_ms: float = 5.0
    ) -> RedisResponseCache:
        return cls(cache_client(url, timeout_ms), namespace=namespace, timeout_ms=timeout_ms)

    def _entry(self, key: str) -> str:
        return f"{self._prefix}e:{key}"

    def _table(self, table: str) -> str:
        return f"{self._prefix}v:{table}"

    async def _call(self, op: Callable[[], Awaitable[T]], timeout_s: float | None = None) -> T:
        if self._down_until and time.monotonic() < self._down_until:
            raise CacheUnavailable("redis marked down after recent failures")
        try:
            async with asyncio.timeout(timeout_s or WRITE_TIMEOUT_S):
                result = await op()
        except (RedisError, OSError, TimeoutError) as exc:
            if not isinstance(exc, TimeoutError | RedisTimeoutError):
                self._failed()
            raise CacheUnavailable(f"redis: {type(exc).__name__}: {exc}") from exc
        self._failures = 0
        self._down_until = 0.0
        return result

    async def get(self, key: str) -> bytes | None:
        if self._down_until and time.monotonic() < self._down_until:
            raise CacheUnavailable("redis marked down after recent failures")
        value: Any = await self._call(
            lambda: self._redis.get(self._entry(key)), timeout_s=self._timeout_s
        )
        return bytes(value) if value is not None else None

    def _failed(self) -> None:
        self._failures += 1
        if self._failures >= self._trip_after:
            self._down_until = time.monotonic() + self._retry_after_s

    async def put(self, key: str, value: bytes, ttl_s: float) -> None:
        ms = max(1, int(ttl_s * 1000))
        await self._call(lambda: self._redis.set(self._entry(key), value, px=ms))

    async def delete(self, key: str) -> None:
        await self._call(lambda: self._redis.unlink(self._entry(key)))

    async def put_vector(self, table: str, key: str, vector: bytes, ttl_s: float) -> None:
        name, ms = self._table(table), max(1, int(ttl_s * 1000))

        async def write() -> None:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.hset(name, key, vector)
                pipe.pexpire(name, ms)
                await pipe.execute()

        await self._call(write)

    async def vectors(self, table: str) -> dict[str, bytes]:
        # A bulk read off the hot path (index loading): allowed more time than a lookup.
        found: dict[Any, Any] = await self._call(
            lambda: self._redis.hgetall(self._table(table)), timeout_s=5.0
        )
        return {_text(k): bytes(v) for k, v in found.items()}

    async def delete_vector(self, table: str, key: str) -> None:
        await self._call(lambda: self._redis.hdel(self._table(table), key))

    async def count(self) -> int:
        return len(await self._keys(f"{self._prefix}e:*"))

    async def clear(self) -> int:
        keys = await self._keys(f"{self._prefix}*")
        for start in range(0, len(keys), 500):
            batch = keys[start : start + 500]
            await self._call(lambda b=batch: self._redis.unlink(*b), timeout_s=5.0)  # type: ignore[misc]
        return len(keys)

    async def _keys(self, pattern: str) -> list[str]:
        async def scan() -> list[str]:
            return [_text(k) async for k in self._redis.scan_iter(match=pattern, count=1000)]

        return await self._call(scan, timeout_s=30.0)

    async def close(self) -> None:
        if self._owns_client:
            await self._redis.aclose()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

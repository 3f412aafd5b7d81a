"""One contract, every ``ResponseCache`` backend: memory and Redis (a real valkey-server)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from switchboard.cache.base import CacheUnavailable, ResponseCache
from switchboard.cache.memory import MemoryResponseCache
from switchboard.cache.redis import RedisResponseCache
from tests.fixtures.ports import free_port


@pytest.fixture(params=["memory", "redis"])
async def cache(request: pytest.FixtureRequest) -> AsyncIterator[ResponseCache]:
    """The memory backend starts nothing; only the Redis one asks for the server."""
    backend: ResponseCache
    if request.param == "memory":
        backend = MemoryResponseCache()
    else:
        # Generous deadline: the suite runs on busy cores; the speed is what bench measures.
        backend = RedisResponseCache.from_url(
            request.getfixturevalue("redis_server_url"),
            namespace=request.getfixturevalue("redis_namespace"),
            timeout_ms=2000,
        )
    try:
        yield backend
    finally:
        await backend.clear()
        await backend.close()


async def test_stored_value_comes_back_and_absent_key_is_none(cache: ResponseCache) -> None:
    assert await cache.get("k1") is None
    await cache.put("k1", b"reply one", ttl_s=60)
    assert await cache.get("k1") == b"reply one"
    await cache.put("k1", b"reply two", ttl_s=60)
    assert await cache.get("k1") == b"reply two"


async def test_entry_expires_after_its_ttl(cache: ResponseCache) -> None:
    await cache.put("short", b"x", ttl_s=0.05)
    await cache.put("long", b"y", ttl_s=60)
    deadline = time.monotonic() + 10
    while await cache.get("short") is not None:
        assert time.monotonic() < deadline, "entry outlived its TTL"
        await asyncio.sleep(0.01)
    assert await cache.get("long") == b"y"


async def test_delete_forgets_entry_and_its_vector(cache: ResponseCache) -> None:
    await cache.put("k", b"v", ttl_s=60)
    await cache.put_vector("agent-a", "k", b"\x00\x01", ttl_s=60)
    await cache.delete("k")
    assert await cache.get("k") is None
    await cache.delete_vector("agent-a", "k")
    assert await cache.vectors("agent-a") == {}


async def test_vector_tables_are_separate_per_agent(cache: ResponseCache) -> None:
    await cache.put_vector("agent-a", "k1", b"va1", ttl_s=60)
    await cache.put_vector("agent-a", "k2", b"va2", ttl_s=60)
    await cache.put_vector("agent-b", "k3", b"vb3", ttl_s=60)
    assert await cache.vectors("agent-a") == {"k1": b"va1", "k2": b"va2"}
    assert await cache.vectors("agent-b") == {"k3": b"vb3"}
    assert await cache.vectors("agent-c") == {}


async def test_count_and_clear(cache: ResponseCache) -> None:
    for i in range(5):
        await cache.put(f"k{i}", b"v", ttl_s=60)
    await cache.put_vector("agent-a", "k0", b"v", ttl_s=60)
    assert await cache.count() == 5
    assert await cache.clear() >= 5
    assert await cache.count() == 0
    assert await cache.get("k0") is None
    assert await cache.vectors("agent-a") == {}


async def test_values_are_binary_safe(cache: ResponseCache) -> None:
    blob = bytes(range(256)) * 4
    await cache.put("bin", blob, ttl_s=60)
    assert await cache.get("bin") == blob


async def test_two_redis_caches_with_different_namespaces_do_not_see_each_other(
    redis_server_url: str, redis_namespace: str
) -> None:
    a = RedisResponseCache.from_url(
        redis_server_url, namespace=redis_namespace + "a:", timeout_ms=2000
    )
    b = RedisResponseCache.from_url(
        redis_server_url, namespace=redis_namespace + "b:", timeout_ms=2000
    )
    try:
        await a.put("k", b"from a", ttl_s=60)
        assert await b.get("k") is None
        assert await b.count() == 0
        assert await a.get("k") == b"from a"
    finally:
        await a.clear()
        await a.close()
        await b.close()


@pytest.mark.integration
async def test_dead_redis_fails_fast_then_is_skipped_for_a_while() -> None:
    # Nothing listens on this port: the connection is refused, at once. The deadline is long so
    # that a loaded machine cannot turn a refusal into a timeout (which does not trip the breaker).
    cache = RedisResponseCache.from_url(f"redis://127.0.0.1:{free_port()}/0", timeout_ms=5_000)
    try:
        for _ in range(10):
            with pytest.raises(CacheUnavailable):
                await cache.get("k")
        # Ten failures in a row open the breaker: the next call does not try the network.
        with pytest.raises(CacheUnavailable, match="marked down"):
            await cache.put("k", b"v", ttl_s=60)
    finally:
        await cache.close()


@pytest.mark.integration
async def test_silent_redis_times_out_within_the_cache_deadline() -> None:
    # A listener that accepts and never answers: the worst case, a hung server.
    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    cache = RedisResponseCache.from_url(f"redis://127.0.0.1:{port}/0", timeout_ms=50)
    try:
        with pytest.raises(CacheUnavailable):
            await cache.get("k")
    finally:
        await cache.close()
        server.close()
        await server.wait_closed()

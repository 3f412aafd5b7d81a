"""Redis use is bounded and fair: bursts never exhaust the pool, never pass for an outage,
and the live-call directory lists no call that no node holds.

Each test is a fault seen on a fresh ``switchboard cluster``: a burst of hang-ups (or of
reconnects) used to outrun the node's 64 pooled connections, redis-py raised "Too many
connections", the node took it for an outage, greeted a reconnecting call a second time
and dropped the releases it could not send, leaving ghosts in ``switchboard calls list``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import msgspec
import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from websockets.asyncio.client import ClientConnection, connect

from switchboard.connections import PoolExhausted, RedisHealth, is_link_error, redis_client
from switchboard.control.client import CallControl
from switchboard.server.releases import ReleaseQueue
from switchboard.state.base import CallState
from switchboard.state.redis import RedisCallStore
from tests.fixtures.agents import EchoAgent
from tests.fixtures.conditions import eventually, eventually_async
from tests.fixtures.distributed import node
from tests.fixtures.server import TIMEOUT, RetellPeer, retell

pytestmark = pytest.mark.integration

#: Calls in each burst (the issue's figure; the pool holds 64 sockets).
BURST = 1000
GREETING = "Hello from the clinic."


async def test_thousands_of_concurrent_claims_saves_and_releases_share_the_pool(
    redis_server_url: str, redis_namespace: str
) -> None:
    client = redis_client(redis_server_url)
    health = RedisHealth(client)
    store = RedisCallStore(client, namespace=redis_namespace, health=health)
    ids = [f"call-{i}" for i in range(2 * BURST)]
    try:
        claimed = await asyncio.gather(
            *(store.claim(call_id, "a") for call_id in ids), return_exceptions=True
        )
        assert [c for c in claimed if not isinstance(c, CallState)] == []
        states = [c for c in claimed if isinstance(c, CallState)]
        for state in states:
            state.turns = 1
        saved = await asyncio.gather(*(store.save(s) for s in states), return_exceptions=True)
        assert [s for s in saved if s is not None] == []
        assert {s.version for s in states} == {1}
        released = await asyncio.gather(
            *(store.release(s.call_id, s.token) for s in states), return_exceptions=True
        )
        assert [r for r in released if r is not None] == []
        assert await client.zcard(store.live_key) == 0
        assert (health.outages, health.errors, health.busy) == (0, 0, 0)
        assert health.is_up
    finally:
        await health.close()
        await client.aclose()


async def test_a_wait_for_a_pooled_socket_is_bounded_and_is_not_an_outage(
    redis_server_url: str, redis_namespace: str
) -> None:
    client = redis_client(redis_server_url, timeout_ms=10_000, max_connections=1, pool_wait_ms=50)
    other = redis_client(redis_server_url)
    health = RedisHealth(client)
    key = f"{redis_namespace}blocker"
    try:
        # The only socket is busy (a blocking pop) until the test lets it go.
        holder = asyncio.create_task(client.blpop([key], timeout=30))
        await eventually_async(lambda: _blocked_clients(other, 1))
        with pytest.raises(PoolExhausted) as raised:
            await client.ping()
        assert is_link_error(raised.value)  # nothing was sent: callers may retry
        health.down(raised.value)
        assert health.is_up
        assert (health.outages, health.busy) == (0, 1)
        await other.lpush(key, b"go")
        assert await holder is not None
        assert await client.ping() is True
    finally:
        await health.close()
        await client.aclose()
        await other.aclose()


async def test_an_unreachable_server_is_still_an_outage() -> None:
    client = redis_client("redis://127.0.0.1:1/0", timeout_ms=200)
    health = RedisHealth(client, probe_interval_s=0.05)
    try:
        with pytest.raises(RedisConnectionError) as raised:
            await client.ping()
        assert not isinstance(raised.value, PoolExhausted)
        health.down(raised.value)
        assert not health.is_up
        assert health.outages == 1
    finally:
        await health.close()
        await client.aclose()


async def _blocked_clients(client: Redis, count: int) -> bool:
    info: dict[str, Any] = await client.info("clients")
    return int(info["blocked_clients"]) >= count


async def _open(url: str, call_id: str) -> tuple[ClientConnection, str]:
    """A call socket, read up to the end of the begin message; returns what it said."""
    ws = await connect(f"{url}/{call_id}", compression=None, open_timeout=TIMEOUT)
    peer = RetellPeer(ws)
    config = await peer.recv()
    assert config["response_type"] == "config"
    frames = await peer.complete(0)
    return ws, "".join(f["content"] for f in frames if f.get("response_id") == 0)


async def test_a_burst_of_reconnects_and_hangups_greets_no_call_twice_and_leaves_no_ghost(
    redis_server_url: str, redis_namespace: str
) -> None:
    control = CallControl.from_url(redis_server_url, namespace=redis_namespace)
    ids = [f"burst-{i}" for i in range(BURST)]
    # Beats of a second: the test's own event loop serves a thousand handshakes at once
    # and may stall for a second, which with faster beats would make the node look dead
    # (tests/test_directory_ghosts.py covers a stalled node on its own).
    async with node(
        EchoAgent(), redis_server_url, redis_namespace, "a", max_calls=2 * BURST, heartbeat_ms=1000
    ) as a:
        shared = a.app.shared
        assert shared is not None
        url = a.ws_url
        opened = await asyncio.gather(*(_open(url, call_id) for call_id in ids))
        assert {said for _, said in opened} == {GREETING}
        # The greeting is saved after the begin message (write-behind): a socket lost
        # before that is another fault (a lost save), not this test's.
        await eventually_async(lambda: _all_greeted(control, ids), timeout=60)
        # Every socket is lost at once (no close frame: a network blip, a balancer
        # restart), and Retell reconnects every call at once: a burst of claims.
        for ws, _ in opened:
            ws.transport.abort()
        await eventually(lambda: a.app.node.active == 0, timeout=60)
        reopened = await asyncio.gather(*(_open(url, call_id) for call_id in ids))
        greeted_again = [call_id for call_id, (_, said) in zip(ids, reopened, strict=True) if said]
        health = shared.health
        assert greeted_again == [], (health.outages, health.errors, health.busy)
        listed = await control.calls()
        assert sorted(c.call_id for c in listed) == sorted(ids)
        # Every caller hangs up at once: a burst of releases.
        await asyncio.gather(*(ws.close() for ws, _ in reopened))
        await eventually_async(lambda: _live(control, 0), timeout=60)
        assert shared.health.outages == 0
        assert shared.health.errors == 0
        async with httpx.AsyncClient(base_url=a.http_url, trust_env=False) as http:
            metrics = (await http.get("/metrics")).text
        assert "switchboard_redis_outages_total 0.0" in metrics
        assert "switchboard_redis_busy_total" in metrics
    await control.aclose()


async def _all_greeted(control: CallControl, ids: list[str]) -> bool:
    """Whether every call's saved state says it was greeted (one pipelined read)."""
    directory = control.directory
    async with directory.client.pipeline(transaction=False) as pipe:
        for call_id in ids:
            pipe.hget(directory.call_key(call_id), "data")
        blobs = await pipe.execute()
    return all(blob and msgspec.json.decode(blob).get("greeted") for blob in blobs)


async def _live(control: CallControl, count: int) -> bool:
    return len(await control.calls()) == count


async def test_a_release_that_failed_in_an_outage_is_sent_once_redis_is_back(
    redis_server_url: str, redis_namespace: str, fault_proxy: Any
) -> None:
    host, port = redis_server_url.removeprefix("redis://").split("/")[0].split(":")
    proxy = await fault_proxy(host, int(port)).start()
    via_proxy = f"redis://{proxy.url_netloc}/0"
    control = CallControl.from_url(redis_server_url, namespace=redis_namespace)
    async with node(EchoAgent(), via_proxy, redis_namespace, "a", redis_timeout_ms=100) as a:
        shared = a.app.shared
        assert shared is not None
        async with retell(a.ws_url, "call-1") as peer:
            await peer.recv()
            await peer.complete(0)
            assert [c.call_id for c in await control.calls()] == ["call-1"]
            proxy.blackhole()
        # The caller hung up (close 1000) while Redis was unreachable.
        await eventually(lambda: not shared.health.is_up)
        assert [c.call_id for c in await control.calls()] == ["call-1"]
        proxy.restore()
        await eventually(lambda: shared.health.is_up, timeout=15)
        await eventually_async(lambda: _live(control, 0))
    await control.aclose()


async def test_a_release_that_can_never_succeed_is_parked_and_counted(
    redis_server_url: str, redis_namespace: str
) -> None:
    client = redis_client(redis_server_url)
    health = RedisHealth(client)
    store = RedisCallStore(client, namespace=redis_namespace, health=health)
    queue = ReleaseQueue(store.release, health, max_attempts=3)
    try:
        first = await store.claim("call-1", "a")
        second = await store.claim("call-2", "a")
        # Someone wrote a string over the live set: every release's ZREM is refused.
        await client.delete(store.live_key)
        await client.set(store.live_key, b"not a sorted set")
        queue.put("call-1", first.token)
        assert [await queue.flush() for _ in range(3)] == [0, 0, 0]
        assert (queue.parked, len(queue)) == (1, 0)  # given up after three tries, counted
        assert health.outages == 0
        # The store is fine again: the next release goes through.
        await client.delete(store.live_key)
        queue.put("call-2", second.token)
        assert await queue.flush() == 1
        assert (queue.released, queue.parked, len(queue)) == (1, 1, 0)
    finally:
        await health.close()
        await client.aclose()

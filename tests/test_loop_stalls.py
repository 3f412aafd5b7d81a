"""A stalled event loop is not a Redis outage.

A node's loop can be busy for longer than a Redis command's deadline (a thousand
handshakes at once, a long garbage collection). Redis answers within microseconds; the
loop's next pass reads the reply and wakes the reading task, but the task runs only in the
pass after, and the deadline's timer, long due, fires first (asyncio and uvloop alike).
Taken for an outage, it held every save and greeted reconnecting calls again (seen as
``health.outages == 1`` in the reconnect-burst test on a loaded machine).

Each test puts a command on the wire, blocks the loop for three deadlines, and expects
the reply, under both loops, against a real valkey-server. A Redis that does not answer
still times out (the last test). The store's script batch reads its replies in the
socket's read callback, which both loops run before due timers; its test guards that.
A connect has no reply to look for: a socket that connects during a stall (the pool
growing mid-burst) must not time out either, and one that nobody accepts still must.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import uvloop
from redis.exceptions import TimeoutError as RedisTimeoutError

from switchboard.cluster.valkey import redis_url, start_valkey
from switchboard.connections import redis_client
from switchboard.state.base import StoreUnavailable
from switchboard.state.redis import RedisCallStore

pytestmark = pytest.mark.integration

#: each command's deadline; the loop stalls for three of them
TIMEOUT_MS = 100
STALL_S = 3 * TIMEOUT_MS / 1000
LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


def _run(loop: str, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
    with asyncio.Runner(loop_factory=LOOPS[loop]) as runner:
        runner.run(asyncio.wait_for(work(), timeout=60))


@asynccontextmanager
async def _store(url: str, namespace: str) -> AsyncIterator[RedisCallStore]:
    """A call store on a client whose commands have ``TIMEOUT_MS`` deadlines."""
    client = redis_client(url, timeout_ms=TIMEOUT_MS)
    store = RedisCallStore(client, namespace=namespace)
    try:
        yield store
    finally:
        await store.close()
        await client.aclose()


def _stall_after(on_the_wire: Callable[[], bool]) -> asyncio.Future[bool]:
    """Block the loop for ``STALL_S`` two callbacks from now, in the same pass as the
    command's first steps and before the loop polls its sockets again: the reply comes
    during the stall and waits unread. Resolves to whether the command was on the wire
    (``on_the_wire()``) when the stall began."""
    loop = asyncio.get_running_loop()
    stalled: asyncio.Future[bool] = loop.create_future()

    def stall() -> None:
        sent = on_the_wire()
        if sent:
            time.sleep(STALL_S)  # the loop is busy; this is the fault, not a wait
        stalled.set_result(sent)

    loop.call_soon(loop.call_soon, stall)
    return stalled


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_a_script_reply_read_late_after_a_stall_is_not_an_outage(
    loop: str, redis_server_url: str, redis_namespace: str
) -> None:
    async def work() -> None:
        async with _store(redis_server_url, redis_namespace) as store:
            state = await store.claim("stalled", "node-a")
            state.turns = 3
            saving = asyncio.ensure_future(store.save(state))
            stalled = _stall_after(lambda: bool(store._batch._inflight))
            assert await stalled, "the save was not on the wire when the loop stalled"
            await saving
            assert state.version == 1
            assert (store.health.outages, store.health.errors) == (0, 0)
            loaded = await store.load("stalled")
            assert loaded is not None
            assert loaded.turns == 3

    _run(loop, work)


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_a_command_reply_read_late_after_a_stall_is_not_a_timeout(
    loop: str, redis_server_url: str, redis_namespace: str
) -> None:
    async def work() -> None:
        client = redis_client(redis_server_url, timeout_ms=TIMEOUT_MS)
        key = f"{redis_namespace}stalled"
        try:
            await client.set(key, "kept")
            (conn,) = client.connection_pool._available_connections
            send = conn.send_packed_command

            async def send_then_stall(*args: Any, **kwargs: Any) -> None:
                await send(*args, **kwargs)
                # the loop is busy as soon as the reading task waits for the reply (the
                # fault), before anything polls the socket
                asyncio.get_running_loop().call_soon(time.sleep, STALL_S)

            conn.send_packed_command = send_then_stall  # type: ignore[method-assign]
            assert await client.get(key) == b"kept"
        finally:
            await client.delete(key)
            await client.aclose()

    _run(loop, work)


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_a_redis_that_does_not_answer_still_times_out(
    loop: str, redis_namespace: str, tmp_path: Path
) -> None:
    """The patience is for replies that came: a server that sends nothing (its own
    valkey-server, stopped with SIGSTOP) fails a command within its deadline, and a save
    as unavailable, with one outage."""
    server = start_valkey(log_dir=tmp_path, persistent=False)

    async def work() -> None:
        async with _store(redis_url(server), redis_namespace) as store:
            state = await store.claim("frozen", "node-a")
            await store.client.ping()
            os.kill(server.pid, signal.SIGSTOP)
            try:
                with pytest.raises(RedisTimeoutError):
                    await store.client.get("anything")
                with pytest.raises(StoreUnavailable):
                    await store.save(state)
                assert store.health.outages == 1
            finally:
                os.kill(server.pid, signal.SIGCONT)

    try:
        _run(loop, work)
    finally:
        server.stop()


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_a_connect_completed_during_a_stall_is_not_a_timeout(
    loop: str, redis_server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new socket (the pool grew mid-burst) connects while the loop is busy for three
    deadlines: the connect's deadline fires late, which times the stall, not Redis."""
    real_open = asyncio.open_connection

    async def open_during_a_stall(*args: Any, **kwargs: Any) -> Any:
        # the loop is busy right after the connect starts (the fault)
        asyncio.get_running_loop().call_soon(time.sleep, STALL_S)
        return await real_open(*args, **kwargs)

    async def work() -> None:
        client = redis_client(redis_server_url, timeout_ms=TIMEOUT_MS)
        try:
            monkeypatch.setattr(asyncio, "open_connection", open_during_a_stall)
            assert await client.ping()
        finally:
            monkeypatch.undo()
            await client.aclose()

    _run(loop, work)


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_a_connect_nobody_accepts_still_times_out(loop: str) -> None:
    """The patience is for a stalled loop only: a listener whose backlog is full never
    completes the handshake, and the connect fails within its deadline's periods."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=0)
    port = listener.getsockname()[1]
    fillers: list[socket.socket] = []
    try:
        # fill the accept queue: a connect beyond it waits for a SYN-ACK that never comes
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)

        async def work() -> None:
            client = redis_client(f"redis://127.0.0.1:{port}/0", timeout_ms=TIMEOUT_MS)
            try:
                with pytest.raises(RedisTimeoutError, match="Timeout connecting"):
                    await client.ping()
            finally:
                await client.aclose()

        _run(loop, work)
    finally:
        for filler in fillers:
            filler.close()
        listener.close()

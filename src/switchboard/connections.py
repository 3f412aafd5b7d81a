"""Redis connections: the one place clients are made, short deadlines, an outage tracker.

redis-py's defaults suit batch jobs, not calls: a dead link is retried with backoff for
many seconds. Here every command has ``timeout_ms`` (connect and read), one immediate
retry (a pooled connection that died with a restarted server), and no backoff. A caller
that sees ``RedisError`` reports it to ``RedisHealth``, which logs the outage once,
counts it, and probes until the server answers again; anything waiting for the store to
come back (a save made during the outage) waits on ``RedisHealth.wait_up``.

The pool is bounded and fair: at most ``max_connections`` sockets, and a command that
finds them all busy waits its turn (first come, first served) for up to ``pool_wait_ms``
instead of failing at once. redis-py's default pool raises "Too many connections" the
moment a burst (a thousand hang-ups, a thousand reconnects) outruns it, and that error is
a ``ConnectionError``: it used to be taken for an outage while Redis was fine. A wait
that runs out raises ``PoolExhausted``: nothing was sent, the caller may retry, and
``RedisHealth`` counts it as ``busy``, never as an outage.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import select
import time
from collections.abc import Callable
from typing import Any

from redis import Redis as SyncRedis
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MaxConnectionsError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry as SyncRetry

from switchboard.log import get_logger

_log = get_logger("switchboard.redis")

#: Errors that mean "the server is unreachable", as opposed to a bad command or reply.
LINK_ERRORS: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    TimeoutError,
)


#: Sockets per process. A command on loopback holds one for well under a millisecond, so
#: 64 serve thousands of commands in flight; the rest wait in ``BoundedPool``.
MAX_CONNECTIONS = 64
#: How long a command may wait for a free socket before ``PoolExhausted``. A healthy server
#: frees sockets in microseconds and a dead link frees them within ``2 * timeout_ms``, so
#: this runs out only when the process asks far more than it can send: measured on a busy
#: 2-core machine, a node's client side manages about 1,000 claims a second, so a burst of
#: 2,000 claims at once needs about 2 s. A claim that gives up serves its call from a fresh
#: state (greeted again), so the bound is generous; saves and releases wait off the turn.
POOL_WAIT_MS = 5000


class PoolExhausted(MaxConnectionsError):
    """No pooled socket freed up within the pool's wait. Nothing was sent; not an outage."""


class BoundedPool(BlockingConnectionPool):
    """redis-py's blocking pool, whose timed-out wait raises ``PoolExhausted``, with a fast
    path: while nobody waits and a socket is free, a command takes it at once, without the
    wait's timer and condition (the per-turn save costs what it cost with the plain pool).

    The base class raises a bare ``ConnectionError`` for both a wait that ran out and a
    connect that failed; only the second one says anything about the server.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._queued = 0

    async def get_connection(self, *_args: Any, **_options: Any) -> Any:
        if self._queued == 0 and self.can_get_connection():
            # nothing between the check and the take yields: no one can slip in between
            connection = self.get_available_connection()  # type: ignore[no-untyped-call]
            try:
                await self.ensure_connection(connection)
            except BaseException:
                await self.release(connection)
                raise
            return connection
        self._queued += 1
        try:
            return await super().get_connection()  # type: ignore[no-untyped-call]
        except RedisConnectionError as exc:
            if isinstance(exc.__cause__, TimeoutError) and not isinstance(exc, PoolExhausted):
                raise PoolExhausted(
                    f"no Redis connection free within {self.timeout}s "
                    f"({self.max_connections} in use)"
                ) from exc
            raise
        finally:
            self._queued -= 1


def redis_client(
    url: str,
    *,
    timeout_ms: float = 250,
    read_timeout_ms: float | None = None,
    retries: int = 1,
    max_connections: int = MAX_CONNECTIONS,
    pool_wait_ms: float = POOL_WAIT_MS,
) -> Redis:
    """A client for ``url`` whose every command fails within about ``2 * timeout_ms``
    once it holds a socket, and waits at most ``pool_wait_ms`` for one.

    Every asyncio Redis client of the package is made here; callers differ only in these
    figures. ``retries=0`` suits a caller with its own deadline or fallback (the response
    cache, the event bus); ``read_timeout_ms`` is for a connection that blocks on purpose
    (a stream consumer's ``XREADGROUP BLOCK``), whose connect must still fail fast.
    """
    timeout = timeout_ms / 1000
    pool = BoundedPool.from_url(
        url,
        max_connections=max_connections,
        timeout=pool_wait_ms / 1000,
        socket_timeout=timeout if read_timeout_ms is None else read_timeout_ms / 1000,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), retries),
        retry_on_timeout=False,
        health_check_interval=0,
        client_name="switchboard",
    )
    pool.connection_class = _PATIENT.get(pool.connection_class, pool.connection_class)
    return Redis.from_pool(pool)


def unread_input(transport: asyncio.BaseTransport | None) -> bool:
    """Whether the socket under ``transport`` holds input the event loop has not read yet
    (bytes, or the peer's close). One ``poll`` with no wait; ``False`` when there is no
    socket to ask."""
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None:
        return False
    try:
        fd = sock.fileno()
    except (OSError, ValueError):
        return False
    if fd < 0:
        return False
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


#: how many times a connect's deadline may move on because it fired late (a stalled loop)
STALLED_CONNECT_PERIODS = 4


class _PatientReads(AbstractConnection):
    """A read deadline that a stalled event loop cannot trip.

    redis-py bounds a reply with ``asyncio.timeout``: the timer cancels the read when it
    fires, whether or not the reply came. When the loop was busy for longer than the
    deadline (a thousand handshakes at once, a long garbage collection), the reply arrives
    during the stall; the loop's next pass reads it into the stream and wakes the reading
    task, but the task only runs in the pass after, and the timer, long due, fires first
    (asyncio and uvloop alike). An answering Redis was taken for an outage, and an outage
    makes a reconnecting call be greeted again. Here the deadline, when it fires, first
    looks for input not yet read (in the stream's buffer or in the socket): if there is
    some, Redis did answer in time and the deadline moves on by a whole period; only
    nothing waiting at the deadline means Redis did not answer.

    A connect has no reply to look for, so its deadline asks the loop instead: a deadline
    that fires late by more than half a period timed a stall of this process's own loop
    (the connect completed meanwhile, its task not run yet), not a silent server, and moves
    on by a period, at most ``STALLED_CONNECT_PERIODS`` times.
    """

    async def _connect(self) -> None:
        limit = self.socket_connect_timeout
        if limit is None:
            await super()._connect()  # type: ignore[no-untyped-call,safe-super]
            return
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        expired = False
        due = loop.time() + limit
        periods = 0
        handle: asyncio.TimerHandle | None = None

        def check() -> None:
            nonlocal handle, expired, due, periods
            now = loop.time()
            if now - due > limit / 2 and periods < STALLED_CONNECT_PERIODS:
                periods += 1
                due = now + limit
                handle = loop.call_at(due, check)
                return
            expired = True
            task.cancel()

        handle = loop.call_at(due, check)
        self.socket_connect_timeout = None  # no deadline of redis-py's own: ours stands in
        try:
            await super()._connect()  # type: ignore[no-untyped-call,safe-super]
        except asyncio.CancelledError:
            if expired and task.uncancel() == 0:
                raise TimeoutError("connect timed out") from None  # "Timeout connecting"
            raise
        finally:
            if handle is not None:
                handle.cancel()
            self.socket_connect_timeout = limit

    async def read_response(
        self,
        disable_decoding: bool = False,
        timeout: float | None = None,  # noqa: ASYNC109 - redis-py's signature
        *,
        disconnect_on_error: bool = True,
        push_request: bool | None = False,
    ) -> Any:
        limit = self.socket_timeout
        if timeout is not None or limit is None:
            return await super().read_response(
                disable_decoding,
                timeout,
                disconnect_on_error=disconnect_on_error,
                push_request=push_request,
            )
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        expired = False
        handle: asyncio.TimerHandle | None = None

        def check() -> None:
            nonlocal handle, expired
            if self._unread():
                handle = loop.call_at(loop.time() + limit, check)
                return
            expired = True
            task.cancel()

        handle = loop.call_at(loop.time() + limit, check)
        try:
            return await super().read_response(
                disable_decoding,
                math.inf,  # no deadline of redis-py's own: this one stands in for it
                disconnect_on_error=disconnect_on_error,
                push_request=push_request,
            )
        except asyncio.CancelledError:
            if expired and task.uncancel() == 0:
                raise RedisTimeoutError(f"Timeout reading from {self._host_error()}") from None
            raise
        finally:
            if handle is not None:
                handle.cancel()

    def _unread(self) -> bool:
        reader, writer = self._reader, self._writer
        if reader is not None and len(reader._buffer) > 0:  # type: ignore[attr-defined]
            return True
        return unread_input(writer.transport if writer is not None else None)


class _PatientConnection(_PatientReads, Connection):
    pass


class _PatientSSLConnection(_PatientReads, SSLConnection):
    pass


class _PatientUnixConnection(_PatientReads, UnixDomainSocketConnection):
    pass


#: redis-py's connection classes (chosen by the URL's scheme) and their patient twins
_PATIENT: dict[type[AbstractConnection], type[AbstractConnection]] = {
    Connection: _PatientConnection,
    SSLConnection: _PatientSSLConnection,
    UnixDomainSocketConnection: _PatientUnixConnection,
}


def blocking_redis_client(url: str, *, timeout_ms: float = 1000) -> SyncRedis:
    """A synchronous client, for tools that run outside an event loop (``switchboard
    chaos`` reading a server's settings or a call's owner between faults): one connection
    at a time, each command bounded by ``timeout_ms``, no retry."""
    timeout = timeout_ms / 1000
    return SyncRedis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=SyncRetry(NoBackoff(), 0),
        retry_on_timeout=False,
        client_name="switchboard",
    )


def describe(url: str) -> str:
    """``url`` without its password, for log lines and error messages."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.rpartition('@')[2]}"


async def check_reachable(url: str, timeout_ms: int = 2000) -> str | None:
    """``None`` if ``url`` answers PING, else a one-line reason (for start-up checks)."""
    client = redis_client(url, timeout_ms=timeout_ms, max_connections=1)
    try:
        await client.ping()
    except (RedisError, OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}".strip().rstrip(":")
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()
    return None


class RedisHealth:
    """Whether Redis answers, as seen by this process's callers.

    ``down(exc)`` is cheap and idempotent: the first call of an outage logs one line and
    starts a probe that PINGs every ``probe_interval_s`` until it succeeds, then logs the
    recovery with the outage's length and sets ``up`` again. Counts feed ``/metrics``.
    """

    def __init__(
        self,
        client: Redis,
        *,
        probe_interval_s: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._probe_interval_s = probe_interval_s
        self._clock = clock
        self._up = asyncio.Event()
        self._up.set()
        self._probe: asyncio.Task[None] | None = None
        self._down_since = 0.0
        self.outages = 0
        self.errors = 0
        #: commands that found every pooled socket busy for the pool's whole wait
        self.busy = 0
        self.closed = False

    @property
    def is_up(self) -> bool:
        return self._up.is_set()

    def down(self, exc: BaseException) -> None:
        """Record a failed command; begin an outage if one is not already under way.

        ``PoolExhausted`` is counted as ``busy`` and begins nothing: the server may be
        answering every command it receives; this process asked for more at once than
        its pool serves within the wait.
        """
        if isinstance(exc, PoolExhausted):
            self.busy += 1
            return
        self.errors += 1
        if not self._up.is_set() or self.closed:
            return
        self._up.clear()
        self.outages += 1
        self._down_since = self._clock()
        _log.warning(
            "redis unreachable; calls continue, state saves are held until it is back",
            error=f"{type(exc).__name__}: {exc}",
        )
        self._probe = asyncio.get_running_loop().create_task(self._wait_back(), name="redis-probe")

    async def wait_up(self) -> None:
        await self._up.wait()

    async def _wait_back(self) -> None:
        while not self.closed:
            await asyncio.sleep(self._probe_interval_s)
            try:
                await self._client.ping()
            except Exception:
                continue
            _log.warning(
                "redis reachable again", outage_s=round(self._clock() - self._down_since, 3)
            )
            self._up.set()
            return

    async def close(self) -> None:
        self.closed = True
        probe, self._probe = self._probe, None
        if probe is not None:
            probe.cancel()
            await asyncio.wait({probe})


def text(value: object) -> str:
    """A reply item as text (clients may be built with or without ``decode_responses``)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return "" if value is None else str(value)


def is_link_error(exc: BaseException) -> bool:
    """Whether the command failed for want of the server, not because of the command:
    nothing was written (or its reply was lost) and the same command may succeed later.

    ``PoolExhausted`` is one (the command never left the process), so callers that map
    these to "unavailable, retry" keep doing so; ``RedisHealth.down`` tells it apart from
    an outage.
    """
    return isinstance(exc, LINK_ERRORS)

"""Redis connections: one client per process, short deadlines, and an outage tracker.

redis-py's defaults suit batch jobs, not calls: a dead link is retried with backoff for
many seconds. Here every command has ``timeout_ms`` (connect and read), one immediate
retry (a pooled connection that died with a restarted server), and no backoff. A caller
that sees ``RedisError`` reports it to ``RedisHealth``, which logs the outage once,
counts it, and probes until the server answers again; anything waiting for the store to
come back (a save made during the outage) waits on ``RedisHealth.wait_up``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from switchboard.log import get_logger

_log = get_logger("switchboard.redis")

#: Errors that mean "the server is unreachable", as opposed to a bad command or reply.
LINK_ERRORS: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    TimeoutError,
)


def redis_client(url: str, *, timeout_ms: int = 250, max_connections: int = 64) -> Redis:
    """A client for ``url`` whose every command fails within about ``2 * timeout_ms``."""
    timeout = timeout_ms / 1000
    client: Redis = Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 1),
        retry_on_timeout=False,
        health_check_interval=0,
        max_connections=max_connections,
        client_name="switchboard",
    )
    return client


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
        self.closed = False

    @property
    def is_up(self) -> bool:
        return self._up.is_set()

    def down(self, exc: BaseException) -> None:
        """Record a failed command; begin an outage if one is not already under way."""
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
    return isinstance(exc, LINK_ERRORS)

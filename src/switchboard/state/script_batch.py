"""``ScriptBatch``: the call store's scripts (claims, saves, releases) of every call on a
node, sent to Redis as one pipeline.

A completed turn is saved before its ``content_complete`` (``calls.keeper``), so a node
makes one fenced save per turn, and one claim and one release per socket. Sent one by
one through ``Redis.execute_command``, each paid for a pooled socket, the client's retry
wrapper, its general argument packer and its timers: more CPU than the distributed
profile's whole difference from the single one should be (docs/scale.md, "The
distributed profile's CPU per turn").

Here they are group-committed: the first script call of a loop tick schedules a flush;
every call made before the flush runs (the rest of that tick, or while the previous
batch is in flight) joins it; the batch goes out as one non-transactional pipeline of
``EVALSHA`` commands, in one write, and each call's own reply decides its own outcome.
The batches use one socket of their own, held from the client's pool and driven
directly, and pack their commands themselves. What may not change:

* a call's future completes only once Redis answered *that* call: a turn's save stays
  durable before its ``content_complete``;
* each call is its own script run, so fencing (the owner token), the version check and
  a lost key are judged per call, never per batch (a pipeline, not a transaction);
* one batch is in flight at a time, and calls go out in the order they were made: a
  call's claim, saves and release reach Redis in that order;
* a batch that fails on the link fails every call in it the way a single command failed
  (the same exception), and the store's outage handling takes over.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

#: a queued call: the script, ``(numkeys, *keys, *args)``, and its caller's future
_Batch = list[tuple[Any, tuple[Any, ...], "asyncio.Future[Any]"]]
#: the deadline of a batch's replies when the client has no socket timeout
_DEFAULT_TIMEOUT_S = 1.0


class ScriptBatch:
    """Group commit of Lua script calls over one client."""

    __slots__ = (
        "_client",
        "_conn",
        "_flushing",
        "_pending",
        "_task",
        "_timeout_s",
        "batches",
        "calls",
    )

    def __init__(self, client: Redis) -> None:
        self._client = client
        self._pending: _Batch = []
        self._flushing = False
        self._task: asyncio.Task[None] | None = None
        self._conn: AbstractConnection | None = None
        self._timeout_s = _DEFAULT_TIMEOUT_S
        #: counters for tests and docs: batches sent, script calls in them
        self.batches = 0
        self.calls = 0

    async def run(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        """``script``'s reply for ``keys`` and ``args``, sent with whatever else is
        waiting. ``script`` is registered on the client (``Redis.register_script``): its
        ``sha``, and its text, loaded again when Redis forgot it (restarted empty).
        Raises what the client raised for the batch, or this call's error reply."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((script, (len(keys), *keys, *args), future))
        if not self._flushing:
            self._flushing = True
            self._task = loop.create_task(self._flush(), name="state-script-batch")
        return await future

    async def close(self) -> None:
        """Give the batches' socket back to the pool (the client closes it)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.socket_timeout = self._timeout_s
            await self._client.connection_pool.release(conn)

    async def _flush(self) -> None:
        batch: _Batch = []
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                await self._send(batch)
        except BaseException as exc:
            _fail([*batch, *self._pending], exc)
            self._pending = []
            raise
        finally:
            self._flushing = False

    async def _send(self, batch: _Batch) -> None:
        self.batches += 1
        self.calls += len(batch)
        try:
            replies = await self._pipeline([(script, args) for script, args, _ in batch])
            redo = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
            if redo:
                # Redis lost its scripts (restarted empty): load them again, send again.
                # A call refused with NOSCRIPT never ran, so sending it again is safe.
                for script in {id(batch[i][0]): batch[i][0] for i in redo}.values():
                    script.sha = await self._client.script_load(script.script)
                again = await self._pipeline([batch[i][:2] for i in redo])
                for i, reply in zip(redo, again, strict=True):
                    replies[i] = reply
        except Exception as exc:
            _fail(batch, exc)
            return
        for (_, _, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _pipeline(self, calls: list[tuple[Any, tuple[Any, ...]]]) -> list[Any]:
        """Send ``calls`` and read their replies. A socket that broke is reconnected and
        the batch sent once more, as the client does for one command (a pooled socket
        that died with a restarted server). The scripts are safe to run twice: a save is
        fenced by its version (one that ran twice is refused, never applied twice), a
        claim twice is a newer claim by the same socket, a release twice is a no-op."""
        try:
            return await self._exchange(calls)
        except RedisConnectionError:
            return await self._exchange(calls)

    async def _exchange(self, calls: list[tuple[Any, tuple[Any, ...]]]) -> list[Any]:
        conn = await self._connection()
        packed = b"".join([_evalsha(script.sha, args) for script, args in calls])
        replies: list[Any] = []
        loop = asyncio.get_running_loop()
        try:
            # One deadline for the whole exchange, moved on by each reply: the
            # connection's own timeouts would start a timer (and a task) per reply.
            async with asyncio.timeout(self._timeout_s) as deadline:
                await conn.send_packed_command(packed, check_health=False)
                for left in range(len(calls) - 1, -1, -1):
                    try:
                        replies.append(await conn.read_response())
                    except ResponseError as err:
                        replies.append(err)
                    if left:
                        deadline.reschedule(loop.time() + self._timeout_s)
        except TimeoutError:
            await conn.disconnect(nowait=True)
            raise RedisTimeoutError("Timeout reading the call store's script replies") from None
        return replies

    async def _connection(self) -> AbstractConnection:
        conn = self._conn
        if conn is None:
            conn = await self._client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
            # Deadlines are ``_exchange``'s, one per batch (see there).
            self._timeout_s = conn.socket_timeout or _DEFAULT_TIMEOUT_S
            conn.socket_timeout = None
            self._conn = conn
        return conn


def _evalsha(sha: str | bytes, args: tuple[Any, ...]) -> bytes:
    """``EVALSHA sha numkeys *keys *args`` in RESP. The arguments are what the store
    passes (str, int, bytes), so this is all the client's general packer would do, at a
    fraction of its cost."""
    raw_sha = sha if isinstance(sha, bytes) else sha.encode()
    parts = [b"*%d\r\n$7\r\nEVALSHA\r\n$%d\r\n%s\r\n" % (len(args) + 2, len(raw_sha), raw_sha)]
    for arg in args:
        raw = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(parts)


def _fail(batch: _Batch, exc: BaseException) -> None:
    error = exc if isinstance(exc, Exception) else RuntimeError("the script batch was cancelled")
    for _, _, future in batch:
        if not future.done():
            future.set_exception(error)

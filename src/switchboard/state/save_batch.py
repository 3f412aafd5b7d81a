"""``SaveBatch``: the saves of every call on a node, sent to Redis as one pipeline.

A completed turn is saved before its ``content_complete`` (``calls.keeper``), so a node
makes one fenced save per turn. Sent one by one, each save paid for a pooled socket, a
command of its own, a ``send`` syscall and a reply wake-up: about a fifth of a
distributed node's CPU (docs/scale.md, "The distributed profile's CPU per turn").

Here the saves of all calls are group-committed: the first save of a loop tick schedules
a flush; every save made before the flush runs (the rest of that tick, or while the
previous batch is in flight) joins it; the batch goes out as one non-transactional
pipeline of ``EVALSHA`` commands, in one write, and each save's own reply decides its
own outcome. The batches use one socket of their own, held from the client's pool and
driven directly: the pool, the retry wrapper and the per-command timers of
``Redis.execute_command`` cost more CPU than the save itself (docs/scale.md). What may
not change:

* a save's future completes only once Redis answered *that* save: the turn stays durable
  before its ``content_complete``;
* each save is its own script call, so fencing (the owner token), the version check and
  a lost key are judged per call, never per batch;
* one batch is in flight at a time, so a call's saves (one at a time already, under its
  keeper's lock) reach Redis in the order they were made;
* a batch that fails on the link fails every save in it the way a single save failed
  (the same exception), and the keeper's outage handling takes over.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

_Batch = list[tuple[tuple[Any, ...], "asyncio.Future[Any]"]]
#: the deadline of a batch's replies when the client has no socket timeout
_DEFAULT_TIMEOUT_S = 1.0


class SaveBatch:
    """Group commit of one Lua script's calls (the fenced save) over one client."""

    __slots__ = (
        "_client",
        "_conn",
        "_flushing",
        "_pending",
        "_script",
        "_task",
        "_timeout_s",
        "batches",
        "saves",
    )

    def __init__(self, client: Redis, script: Any) -> None:
        self._client = client
        #: a script registered on ``client`` (``Redis.register_script``): its ``sha`` and
        #: its text, loaded again when Redis forgot it (restarted empty)
        self._script = script
        self._pending: _Batch = []
        self._flushing = False
        self._task: asyncio.Task[None] | None = None
        self._conn: AbstractConnection | None = None
        self._timeout_s = _DEFAULT_TIMEOUT_S
        #: counters for the node's metrics and for tests: batches sent, saves in them
        self.batches = 0
        self.saves = 0

    async def run(self, key: str, args: list[Any]) -> Any:
        """The script's reply for ``key`` and ``args``, sent with whatever else is
        waiting. Raises what the client raised for the batch, or this save's error reply."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append(((key, *args), future))
        if not self._flushing:
            self._flushing = True
            self._task = loop.create_task(self._flush(), name="state-save-batch")
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
        self.saves += len(batch)
        try:
            replies = await self._pipeline([args for args, _ in batch])
            if any(isinstance(reply, NoScriptError) for reply in replies):
                # Redis lost its scripts (restarted empty): load it again, send again.
                # A save refused with NOSCRIPT never ran, so sending it again is safe.
                self._script.sha = await self._client.script_load(self._script.script)
                redo = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
                for i, reply in zip(
                    redo, await self._pipeline([batch[i][0] for i in redo]), strict=True
                ):
                    replies[i] = reply
        except Exception as exc:
            _fail(batch, exc)
            return
        for (_, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _pipeline(self, calls: list[tuple[Any, ...]]) -> list[Any]:
        """Send ``calls`` and read their replies. A socket that broke is reconnected and
        the batch sent once more, as the client does for one command (a pooled socket
        that died with a restarted server): a save is fenced by its version, so one that
        ran twice is refused, never applied twice."""
        try:
            return await self._exchange(calls)
        except RedisConnectionError:
            return await self._exchange(calls)

    async def _exchange(self, calls: list[tuple[Any, ...]]) -> list[Any]:
        conn = await self._connection()
        sha = self._script.sha
        sha = sha.decode() if isinstance(sha, bytes) else sha
        packed = b"".join([_evalsha(sha, args) for args in calls])
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
            raise RedisTimeoutError("Timeout reading the state saves' replies") from None
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


def _evalsha(sha: str, args: tuple[Any, ...]) -> bytes:
    """``EVALSHA sha 1 key *args`` in RESP. The arguments are what the store passes (str,
    int, bytes), so this is all the client's general packer would do, at a fraction of
    its cost."""
    parts = [
        b"*%d\r\n$7\r\nEVALSHA\r\n$%d\r\n%s\r\n$1\r\n1\r\n"
        % (len(args) + 3, len(sha), sha.encode())
    ]
    for arg in args:
        raw = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(parts)


def _fail(batch: _Batch, exc: BaseException) -> None:
    error = exc if isinstance(exc, Exception) else RuntimeError("the save batch was cancelled")
    for _, future in batch:
        if not future.done():
            future.set_exception(error)

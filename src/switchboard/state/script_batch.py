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
The batches use one socket of their own: redis-py connects it and greets it (AUTH,
SELECT, TLS, the protocol version), then the batch takes its transport over
(``switchboard.redis_link``: an ``asyncio.Protocol`` and a hiredis reader). A batch is one
``write``; each reply completes its call's future in the read callback itself, and the next
batch leaves from there too, so a save costs no task, no stream reader and no timer of its
own. What may not
change:

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
from collections import deque
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from switchboard.redis_link import RawLink, pack, take_over

#: a queued call: the script, ``(numkeys, *keys, *args)``, and its caller's future
_Call = tuple[Any, tuple[Any, ...], "asyncio.Future[Any]"]
#: the deadline of a batch's replies when the client has no socket timeout
_DEFAULT_TIMEOUT_S = 1.0
#: how long a call that may wait (``run(..., soon=False)``) waits for a batch to ride on
#: before it goes out on its own
LINGER_S = 0.02


class ScriptBatch:
    """Group commit of Lua script calls over one client."""

    __slots__ = (
        "_busy",
        "_client",
        "_conn",
        "_inflight",
        "_linger",
        "_link",
        "_loop",
        "_pending",
        "_progress",
        "_redo",
        "_redoing",
        "_retried",
        "_scheduled",
        "_timeout_s",
        "_timer",
        "batches",
        "calls",
    )

    def __init__(self, client: Redis) -> None:
        self._client = client
        self._pending: list[_Call] = []
        #: the batch on the wire, oldest first: replies come back in this order
        self._inflight: deque[_Call] = deque()
        #: calls of the batch on the wire that Redis refused with NOSCRIPT
        self._redo: list[_Call] = []
        self._redoing = False
        #: the batch on the wire was already sent again once, after its socket broke
        self._retried = False
        #: a batch is on the wire, or being connected for, or its scripts reloaded
        self._busy = False
        self._scheduled = False
        self._link: RawLink | None = None
        self._conn: AbstractConnection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        #: the flush of calls that may wait, should no other call come first
        self._linger: asyncio.TimerHandle | None = None
        self._progress = 0.0
        self._timeout_s = _DEFAULT_TIMEOUT_S
        #: counters for tests and docs: batches sent, script calls in them
        self.batches = 0
        self.calls = 0

    async def run(self, script: Any, keys: list[str], args: list[Any], *, soon: bool = True) -> Any:
        """``script``'s reply for ``keys`` and ``args``, sent with whatever else is
        waiting. ``script`` is registered on the client (``Redis.register_script``): its
        ``sha``, and its text, loaded again when Redis forgot it (restarted empty).
        Raises what the client raised for the batch, or this call's error reply.

        ``soon=False`` is for a call nobody waits on (an ended call's release): it rides
        on the next batch, and goes out on its own only if none comes within
        ``LINGER_S``. On an idle link a batch of its own costs a write, a wake-up for the
        reply and a loop pass; riding along costs none of them."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._pending.append((script, (len(keys), *keys, *args), future))
        if not self._busy and not self._scheduled:
            if soon:
                self._scheduled = True
                loop.call_soon(self._start)  # the rest of this tick joins the batch
            elif self._linger is None:
                self._linger = loop.call_later(LINGER_S, self._lingered)
        return await future

    async def connect(self) -> None:
        """Open the batches' socket now rather than at the first call, so the node's first
        claim does not wait for a connect and a greeting, and the socket is there from the
        start (it lives as long as the node). Raises what connecting raised; a call made
        meanwhile waits for it, and a failed connect is tried again by the next batch."""
        if self._link is not None or self._busy:
            return
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        self._busy = True
        try:
            await self._connect()
        finally:
            self._busy = False
            if self._pending and not self._scheduled:
                self._scheduled = True
                loop.call_soon(self._start)

    async def close(self) -> None:
        """Close the batches' socket and give its connection back to the pool. Calls
        still waiting fail as on a broken link."""
        link, self._link = self._link, None
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        error = RedisConnectionError("the call store was closed")
        _fail([*self._inflight, *self._redo, *self._pending], error)
        self._inflight.clear()
        self._redo = []
        self._pending = []
        if link is not None:
            link.transport.close()
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.disconnect(nowait=True)
            await self._client.connection_pool.release(conn)

    # ------------------------------------------------------------------ sending

    def _lingered(self) -> None:
        self._linger = None
        if not self._scheduled:
            self._start()

    def _start(self) -> None:
        self._scheduled = False
        if self._busy or not self._pending:
            return
        if self._linger is not None:  # the calls that may wait go with this batch
            self._linger.cancel()
            self._linger = None
        batch, self._pending = self._pending, []
        self.batches += 1
        self.calls += len(batch)
        self._busy = True
        self._send(batch)

    def _send(self, calls: list[_Call]) -> None:
        """Put ``calls`` on the wire, connecting first if there is no socket."""
        link = self._link
        if link is None or link.transport.is_closing():
            self._spawn(self._connect_and_send(calls))
            return
        self._inflight.extend(calls)
        link.transport.write(b"".join([_evalsha(script.sha, args) for script, args, _ in calls]))
        loop = self._loop
        assert loop is not None
        self._progress = loop.time()
        if self._timer is None:
            self._timer = loop.call_at(self._progress + self._timeout_s, self._deadline)

    async def _connect_and_send(self, calls: list[_Call]) -> None:
        try:
            await self._connect()
        except Exception as exc:
            self._give_up(calls, exc)
            return
        self._send(calls)

    async def _connect(self) -> None:
        """A socket redis-py has connected and greeted, its transport taken over."""
        conn = self._conn
        if conn is not None:  # the last one broke: redis-py connects it again
            await conn.disconnect(nowait=True)
        else:
            conn = await self._client.connection_pool.get_connection()  # type: ignore[no-untyped-call]
            self._conn = conn
            self._timeout_s = conn.socket_timeout or _DEFAULT_TIMEOUT_S
        self._link = await take_over(conn, self._reply, self._lost)

    # ------------------------------------------------------------------ replies

    def _reply(self, link: RawLink, reply: Any) -> None:
        if link is not self._link or not self._inflight:
            return
        call = self._inflight.popleft()
        self._progress = self._loop.time()  # type: ignore[union-attr]
        if isinstance(reply, NoScriptError) and not self._redoing:
            self._redo.append(call)
        else:
            _settle(call[2], reply)
        if not self._inflight:
            self._batch_answered()

    def _batch_answered(self) -> None:
        if self._redo:
            # Redis lost its scripts (restarted empty): load them again, send again. A
            # call refused with NOSCRIPT never ran, so sending it again is safe.
            redo, self._redo = self._redo, []
            self._spawn(self._reload_and_send(redo))
            return
        self._redoing = False
        self._retried = False
        self._busy = False
        if self._pending:
            self._start()  # straight from the read: no loop iteration in between

    async def _reload_and_send(self, calls: list[_Call]) -> None:
        try:
            for script in {id(script): script for script, _, _ in calls}.values():
                script.sha = await self._client.script_load(script.script)
        except Exception as exc:
            self._give_up(calls, exc)
            return
        self._redoing = True
        self._send(calls)

    def _lost(self, link: RawLink, error: Exception) -> None:
        """The socket broke: the batch on it goes out once more on a new one (the scripts
        are safe to run twice: a save twice is refused by its version, a claim twice is a
        newer claim by the same socket, a release twice does nothing), else fails."""
        if link is not self._link:
            return
        self._link = None
        unanswered = [*self._inflight, *self._redo]
        self._inflight.clear()
        self._redo = []
        if not unanswered:
            return
        if self._retried:
            self._give_up(unanswered, error)
            return
        self._retried = True
        self._spawn(self._connect_and_send(unanswered))

    def _deadline(self) -> None:
        self._timer = None
        if not self._inflight:
            return
        loop = self._loop
        assert loop is not None
        due = self._progress + self._timeout_s
        if loop.time() < due:  # a reply came since: the deadline moved on with it
            self._timer = loop.call_at(due, self._deadline)
            return
        link, self._link = self._link, None
        if link is not None:
            link.transport.abort()
        unanswered = [*self._inflight, *self._redo]
        self._inflight.clear()
        self._redo = []
        self._give_up(
            unanswered, RedisTimeoutError("Timeout reading the call store's script replies")
        )

    def _give_up(self, calls: list[_Call], exc: BaseException) -> None:
        """Fail ``calls``; the calls queued meanwhile go out in a batch of their own."""
        _fail(calls, exc)
        self._redoing = False
        self._retried = False
        self._busy = False
        if self._pending and not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._start)  # type: ignore[union-attr]

    def _spawn(self, work: Any) -> None:
        task = self._loop.create_task(work, name="state-script-batch")  # type: ignore[union-attr]
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)


#: the batches' connect and reload tasks, held until done (the loop keeps weak references)
_tasks: set[asyncio.Task[None]] = set()


def _settle(future: asyncio.Future[Any], reply: Any) -> None:
    if future.done():  # its caller gave up waiting
        return
    if isinstance(reply, Exception):
        future.set_exception(reply)
    else:
        future.set_result(reply)


def _evalsha(sha: str | bytes, args: tuple[Any, ...]) -> bytes:
    """``EVALSHA sha numkeys *keys *args`` in RESP (the store passes str, int and bytes)."""
    return pack("EVALSHA", sha, *args)


def _fail(calls: list[_Call] | deque[_Call], exc: BaseException) -> None:
    error = exc if isinstance(exc, Exception) else RuntimeError("the script batch was cancelled")
    for _, _, future in calls:
        if not future.done():
            future.set_exception(error)

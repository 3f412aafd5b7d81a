"""The node's end of the command channel: commands for its calls, and claims by others.

One pub/sub connection subscribes to ``{ns}node:{node_id}:commands`` and to the store's
claims channel. A command runs against the call's session here, at most once per id across
the cluster (``CommandLedger``), and is answered on its ``reply_to`` channel; a claim
announced by another node fences this node's session for that call at once (the
partitioned-owner case), rather than at its next save.

Every claim in the cluster reaches every node, so the messages are read off the socket
directly (``switchboard.redis_link``): a claim is judged in the read callback, and a
command is queued for the listener's task, which runs commands one at a time, in order.

When Redis goes away the loop reports the outage to the shared ``RedisHealth``, waits
for it to come back and subscribes again; commands published meanwhile find no
subscriber, so their senders get a clear error rather than silence.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from switchboard.connections import RedisHealth
from switchboard.control.commands import (
    CALL_GONE,
    NOT_HERE,
    UNAVAILABLE,
    AnyCommand,
    EndCommand,
    Reply,
    SayCommand,
    TransferCommand,
    decode_command,
    encode,
)
from switchboard.control.directory import command_channel
from switchboard.control.ledger import CommandLedger
from switchboard.log import get_logger
from switchboard.redis_link import RawLink, pack, take_over

_log = get_logger("switchboard.control")


class LiveSession(Protocol):
    """What the listener needs of a ``CallSession``."""

    @property
    def epoch(self) -> int: ...

    @property
    def fenced(self) -> bool: ...

    @property
    def closed(self) -> bool: ...

    def claimed_elsewhere(self, epoch: int) -> None: ...

    async def interrupt(
        self, content: str, *, transfer_number: str | None = None, end_call: bool = False
    ) -> None: ...


class CommandListener:
    def __init__(
        self,
        client: Redis,
        *,
        namespace: str,
        node_id: str,
        claims_channel: str,
        sessions: Callable[[str], LiveSession | None],
        health: RedisHealth,
    ) -> None:
        self.client = client
        self.node_id = node_id
        self.commands_channel = command_channel(namespace, node_id)
        self.claims_channel = claims_channel
        self._sessions = sessions
        self._health = health
        self._ledger = CommandLedger(client, namespace=namespace)
        self._task: asyncio.Task[None] | None = None
        self.subscribed = asyncio.Event()
        self.commands_handled = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="command-listener"
            )

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            _, pending = await asyncio.wait({task}, timeout=2.0)
            if pending:
                _log.warning("command listener ignored cancellation")

    async def _run(self) -> None:
        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.subscribed.clear()
                self._health.down(exc)
                await self._health.wait_up()

    async def _listen(self) -> None:
        """Subscribe on a socket of the client's pool, then carry out the commands that
        arrive, until the socket breaks (raised) or the task is cancelled."""
        pool = self.client.connection_pool
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        inbox = _Inbox(self.claims_channel, self._on_claim, self.subscribed, channels=2)
        link: RawLink | None = None
        try:
            link = await take_over(conn, inbox.received, inbox.lost)
            # ``subscribed`` is set when Redis confirms both channels. That wait has no
            # deadline of its own: like any message, it only fails with the link.
            link.transport.write(pack("SUBSCRIBE", self.commands_channel, self.claims_channel))
            while True:
                await self._on_command(await inbox.next_command())
        finally:
            if link is not None:
                link.transport.abort()
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)
            await pool.release(conn)

    def _on_claim(self, data: bytes | str) -> None:
        text = data.decode(errors="replace") if isinstance(data, bytes) else data
        parts = text.rsplit(" ", 2)
        if len(parts) != 3 or not parts[1].isdigit():
            return
        call_id, epoch, node = parts[0], int(parts[1]), parts[2]
        if node == self.node_id:
            return  # our own claim: a newer socket here already replaced the older one
        session = self._sessions(call_id)
        if session is not None:
            session.claimed_elsewhere(epoch)

    async def _on_command(self, data: bytes | str) -> None:
        try:
            command = decode_command(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            _log.warning("ignored malformed command", error=str(exc)[:200])
            return
        reply = await self._once(command)
        self.commands_handled += 1
        await self.client.publish(command.reply_to, encode(reply))

    async def _once(self, command: AnyCommand) -> Reply:
        """Carry ``command`` out unless its id already was, anywhere in the cluster.

        A call this node does not serve (no session, or one fenced or closed) is
        ``not_here`` without touching the record, so the call's real owner may act.
        """
        session = self._sessions(command.call_id)
        if session is None or session.closed or session.fenced:
            return Reply(id=command.id, ok=False, node=self.node_id, error=NOT_HERE)
        try:
            recorded = await self._ledger.begin(command.id, self.node_id)
        except RedisError as exc:
            _log.warning("command not carried out: its id cannot be recorded", error=str(exc))
            return Reply(
                id=command.id, ok=False, node=self.node_id, error=UNAVAILABLE, detail=str(exc)
            )
        if recorded is not None:
            _log.info("command already carried out", call_id=command.call_id, id=command.id)
            return recorded
        reply = await self._execute(command, session)
        try:
            if reply.ok:
                await self._ledger.finish(reply)
            else:
                await self._ledger.release(command.id)
        except RedisError as exc:
            # The marker stays: a retry is answered in_progress, never carried out twice.
            _log.warning("outcome of a command not recorded", id=command.id, error=str(exc))
        return reply

    async def _execute(self, command: AnyCommand, session: LiveSession) -> Reply:
        try:
            if isinstance(command, SayCommand):
                await session.interrupt(command.text)
            elif isinstance(command, TransferCommand):
                await session.interrupt(command.text, transfer_number=command.number)
            elif isinstance(command, EndCommand):
                await session.interrupt(command.text, end_call=True)
        except Exception as exc:
            _log.info(
                "command for a closed call", call_id=command.call_id, op=type(command).__name__
            )
            return Reply(
                id=command.id, ok=False, node=self.node_id, error=CALL_GONE, detail=str(exc)
            )
        _log.info("command carried out", call_id=command.call_id, command=type(command).__name__)
        return Reply(id=command.id, ok=True, node=self.node_id)


class _Inbox:
    """What the subscription's socket delivers: claims judged at once (``on_claim``),
    commands queued for the listener's task, ``subscribed`` set once Redis confirmed
    ``channels`` subscriptions, the link lost."""

    __slots__ = (
        "_channels",
        "_claims",
        "_commands",
        "_confirmed",
        "_error",
        "_on_claim",
        "_subscribed",
        "_waiter",
    )

    def __init__(
        self,
        claims_channel: str,
        on_claim: Callable[[bytes | str], None],
        subscribed: asyncio.Event,
        *,
        channels: int,
    ) -> None:
        self._claims = (claims_channel, claims_channel.encode())
        self._on_claim = on_claim
        self._subscribed = subscribed
        self._channels = channels
        self._confirmed = 0
        self._commands: deque[bytes | str] = deque()
        self._error: Exception | None = None
        self._waiter: asyncio.Future[None] | None = None

    def received(self, _link: RawLink, reply: Any) -> None:
        if not isinstance(reply, list) or len(reply) < 3:
            return  # not a pub/sub message (nothing else is sent on this socket)
        kind = reply[0]
        if kind in (b"message", "message"):
            if reply[1] in self._claims:
                try:
                    self._on_claim(reply[2])
                except Exception:
                    _log.exception("a claim announcement could not be handled")
                return
            self._commands.append(reply[2])
            self._wake()
        elif kind in (b"subscribe", "subscribe"):
            self._confirmed += 1
            if self._confirmed == self._channels:
                self._subscribed.set()

    def lost(self, _link: RawLink, error: Exception) -> None:
        if self._error is None:
            self._error = error
        self._wake()

    async def next_command(self) -> bytes | str:
        """The oldest command not yet taken; raises once the link broke."""
        while not self._commands:
            await self._wait()
        return self._commands.popleft()

    async def _wait(self) -> None:
        if self._error is not None:
            raise self._error
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None
        if self._error is not None:
            raise self._error

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

"""The node's end of the command channel: commands for its calls, and claims by others.

One pub/sub connection subscribes to ``{ns}node:{node_id}:commands`` and to the store's
claims channel. A command runs against the call's session here, at most once per id across
the cluster (``CommandLedger``), and is answered on its ``reply_to`` channel; a claim
announced by another node fences this node's session for that call at once (the
partitioned-owner case), rather than at its next save.

When Redis goes away the loop reports the outage to the shared ``RedisHealth``, waits
for it to come back and subscribes again; commands published meanwhile find no
subscriber, so their senders get a clear error rather than silence.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Protocol

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
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.commands_channel, self.claims_channel)
                self.subscribed.set()
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None:
                        await self._dispatch(message["channel"], message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.subscribed.clear()
                self._health.down(exc)
                await self._health.wait_up()
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _dispatch(self, channel: bytes | str, data: bytes | str) -> None:
        name = channel.decode() if isinstance(channel, bytes) else channel
        if name == self.claims_channel:
            self._on_claim(data)
        else:
            await self._on_command(data)

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

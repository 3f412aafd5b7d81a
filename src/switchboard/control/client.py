"""``CallControl``: act on a live call from any process, through the node that owns it.

The owner is read from the call's state (written by the claim), then the command is
published on that node's channel and the reply awaited on a private channel subscribed
beforehand. A call moves between nodes: a reconnect lands elsewhere, or the owner died
and the call is *orphaned* until Retell reconnects it. So when the node answers
``not_here``/``call_gone`` (or ``in_progress``, or nothing), or the owner has no
heartbeat, the sender waits on the directory (the claims channel, and a fresh look-up
every ``_RECHECK_S``) and sends the same command again, until ``move_wait_s`` has
passed. The same id every time: the nodes record each id before acting
(``CommandLedger``), so a retry after a lost reply is answered with the recorded
outcome and never carried out twice. Every failure is a ``CommandFailed`` with a
sentence a person can act on, and says whether asking again later (same id) may help.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable

import msgspec
from redis.asyncio import Redis
from redis.asyncio.client import PubSub

from switchboard.connections import redis_client
from switchboard.control.commands import (
    CALL_GONE,
    IN_PROGRESS,
    NOT_HERE,
    RETRIABLE_ERRORS,
    UNAVAILABLE,
    AnyCommand,
    EndCommand,
    Reply,
    SayCommand,
    TransferCommand,
    decode_reply,
    encode,
)
from switchboard.control.directory import Directory, LiveCall, NodeInfo, command_channel
from switchboard.control.ledger import CommandLedger

#: While waiting for a call to move, the owner is read again at least this often (the
#: claims channel wakes the wait sooner; pub/sub may drop a message, a look-up cannot).
_RECHECK_S = 0.25


class CommandFailed(RuntimeError):
    """The command was not carried out, or its outcome is unknown; the message says why.

    ``retriable``: sending the same command id again later may still carry it out (the
    call was moving, its node did not answer, Redis failed). ``False``: it never will
    (the call is not live, the node refused the command).
    """

    def __init__(self, message: str, *, retriable: bool = False) -> None:
        super().__init__(message)
        self.retriable = retriable


class CallControl:
    def __init__(
        self,
        client: Redis,
        *,
        namespace: str = "switchboard:",
        timeout_s: float = 3.0,
        move_wait_s: float = 5.0,
    ) -> None:
        self.client = client
        self.namespace = namespace
        #: how long one node has to answer
        self.timeout_s = timeout_s
        #: how long a command follows a call that is moving (or orphaned) before giving up
        self.move_wait_s = move_wait_s
        self.directory = Directory(client, namespace)
        self.ledger = CommandLedger(client, namespace=namespace)
        self.claims_channel = f"{namespace}claims"

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        namespace: str = "switchboard:",
        timeout_s: float = 3.0,
        move_wait_s: float = 5.0,
    ) -> CallControl:
        return cls(
            redis_client(url, timeout_ms=1000),
            namespace=namespace,
            timeout_s=timeout_s,
            move_wait_s=move_wait_s,
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    async def calls(self) -> list[LiveCall]:
        return await self.directory.calls()

    async def nodes(self) -> list[NodeInfo]:
        return await self.directory.nodes()

    # ``command_id``: pass the same id to ask again about a command whose outcome is
    # unknown (a timeout, a crash before recording it); a fresh id is a new command.

    async def say(self, call_id: str, text: str, *, command_id: str | None = None) -> Reply:
        if not text.strip():
            raise CommandFailed("nothing to say: the text is empty")
        return await self._send(
            command_id,
            lambda id_, to: SayCommand(id=id_, call_id=call_id, reply_to=to, text=text),
        )

    async def transfer(
        self, call_id: str, number: str, text: str = "", *, command_id: str | None = None
    ) -> Reply:
        if not number.strip():
            raise CommandFailed("no number to transfer to")
        return await self._send(
            command_id,
            lambda id_, to: TransferCommand(
                id=id_, call_id=call_id, reply_to=to, number=number, text=text
            ),
        )

    async def end(self, call_id: str, text: str = "", *, command_id: str | None = None) -> Reply:
        return await self._send(
            command_id,
            lambda id_, to: EndCommand(id=id_, call_id=call_id, reply_to=to, text=text),
        )

    async def _send(self, command_id: str | None, make: Callable[[str, str], AnyCommand]) -> Reply:
        if command_id is not None and not command_id.strip():
            raise CommandFailed("the command id is empty")
        command = make(command_id or uuid.uuid4().hex, f"{self.namespace}reply:{uuid.uuid4().hex}")
        call_id = command.call_id
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.move_wait_s
        claims: PubSub | None = None
        asked_before = command_id is not None
        try:
            while True:
                if asked_before:
                    recorded = await self.ledger.recorded(command.id)
                    if recorded is not None and recorded.error != IN_PROGRESS:
                        return _outcome(call_id, recorded)
                asked_before = True
                reply, why, moved = await self._ask_owner(command)
                if reply is not None:
                    return _outcome(call_id, reply)
                if loop.time() >= deadline:
                    raise CommandFailed(why, retriable=True)
                if moved:
                    continue
                if claims is None:
                    claims = self.client.pubsub(ignore_subscribe_messages=True)
                    await claims.subscribe(self.claims_channel)
                await _claimed(claims, call_id, min(_RECHECK_S, deadline - loop.time()))
        finally:
            if claims is not None:
                with contextlib.suppress(Exception):
                    await claims.aclose()  # type: ignore[no-untyped-call]

    async def _ask_owner(self, command: AnyCommand) -> tuple[Reply | None, str, bool]:
        """One attempt at the call's owner: (the reply to return, or ``None``; why not;
        whether the call moved to another node meanwhile, so asking again is worth it)."""
        call_id = command.call_id
        owner, alive = await self.directory.owner(call_id)
        if owner is None:
            raise CommandFailed(f"call {call_id} is not live on any node")
        if not alive:
            why = (
                f"call {call_id} is held by node {owner}, which is not answering "
                "(orphaned: it will resume when Retell reconnects it to another node)"
            )
            return None, why, False
        try:
            reply = await self._exchange(owner, command)
        except _NoAnswer as err:
            return None, str(err), False
        if reply.ok or reply.error not in RETRIABLE_ERRORS:
            return reply, "", False
        # The node that answered is no longer the owner: ask the new one now.
        moved = (await self.directory.owner(call_id))[0] != reply.node
        return None, _explain(call_id, reply), moved

    async def _exchange(self, owner: str, command: AnyCommand) -> Reply:
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(command.reply_to)
            receivers = await self.client.publish(
                command_channel(self.namespace, owner), encode(command)
            )
            if receivers == 0:
                raise _NoAnswer(f"node {owner} holds call {command.call_id} but is not listening")
            try:
                async with asyncio.timeout(self.timeout_s):
                    while True:
                        message = await pubsub.get_message(timeout=self.timeout_s)
                        if message is None:
                            continue
                        try:
                            reply = decode_reply(message["data"])
                        except (msgspec.DecodeError, msgspec.ValidationError):
                            continue
                        if reply.id == command.id:
                            return reply
            except TimeoutError:
                raise _NoAnswer(
                    f"node {owner} did not answer within {self.timeout_s:g} s"
                ) from None
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]


class _NoAnswer(Exception):
    """The owner did not take the command or did not answer: its outcome is unknown."""


async def _claimed(claims: PubSub, call_id: str, timeout_s: float) -> None:
    """Return when a claim of ``call_id`` is announced, or after ``timeout_s``."""
    prefix = f"{call_id} ".encode()
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(0.0, timeout_s)):
            while True:
                message = await claims.get_message(timeout=timeout_s)
                if message is None:
                    continue
                data = message["data"]
                if isinstance(data, str):
                    data = data.encode()
                if data.startswith(prefix):
                    return


def _outcome(call_id: str, reply: Reply) -> Reply:
    if reply.ok:
        return reply
    raise CommandFailed(_explain(call_id, reply), retriable=reply.error in RETRIABLE_ERRORS)


def _explain(call_id: str, reply: Reply) -> str:
    if reply.error == NOT_HERE:
        return f"call {call_id} is no longer on node {reply.node}"
    if reply.error == CALL_GONE:
        return f"call {call_id} ended or its socket closed on node {reply.node}"
    if reply.error == IN_PROGRESS:
        return (
            f"command {reply.id} on call {call_id} is being carried out by node {reply.node}, "
            "or that node died while carrying it out (it is never carried out twice)"
        )
    if reply.error == UNAVAILABLE:
        return f"node {reply.node} cannot reach Redis to record the command: {reply.detail}"
    return f"node {reply.node} refused the command: {reply.error} {reply.detail}".strip()

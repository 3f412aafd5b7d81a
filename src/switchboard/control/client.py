"""``CallControl``: act on a live call from any process, through the node that owns it.

The owner is read from the call's state (written by the claim), its heartbeat is checked,
then the command is published on that node's channel and the reply awaited on a private
channel subscribed beforehand. If the call moved between the look-up and the command (a
reconnect landed on another node) the owner answers ``not_here`` and the command is sent
once more to the new owner. Every failure is a ``CommandFailed`` with a sentence a
person can act on.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable

import msgspec
from redis.asyncio import Redis

from switchboard.connections import redis_client
from switchboard.control.commands import (
    AnyCommand,
    EndCommand,
    Reply,
    SayCommand,
    TransferCommand,
    decode_reply,
    encode,
)
from switchboard.control.directory import Directory, LiveCall, NodeInfo, command_channel


class CommandFailed(RuntimeError):
    """The command was not carried out; the message says why."""


class CallControl:
    def __init__(
        self, client: Redis, *, namespace: str = "switchboard:", timeout_s: float = 3.0
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.timeout_s = timeout_s
        self.directory = Directory(client, namespace)

    @classmethod
    def from_url(
        cls, url: str, *, namespace: str = "switchboard:", timeout_s: float = 3.0
    ) -> CallControl:
        return cls(redis_client(url, timeout_ms=1000), namespace=namespace, timeout_s=timeout_s)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def calls(self) -> list[LiveCall]:
        return await self.directory.calls()

    async def nodes(self) -> list[NodeInfo]:
        return await self.directory.nodes()

    async def say(self, call_id: str, text: str) -> Reply:
        if not text.strip():
            raise CommandFailed("nothing to say: the text is empty")
        return await self._send(
            lambda id_, to: SayCommand(id=id_, call_id=call_id, reply_to=to, text=text)
        )

    async def transfer(self, call_id: str, number: str, text: str = "") -> Reply:
        if not number.strip():
            raise CommandFailed("no number to transfer to")
        return await self._send(
            lambda id_, to: TransferCommand(
                id=id_, call_id=call_id, reply_to=to, number=number, text=text
            )
        )

    async def end(self, call_id: str, text: str = "") -> Reply:
        return await self._send(
            lambda id_, to: EndCommand(id=id_, call_id=call_id, reply_to=to, text=text)
        )

    async def _send(self, make: Callable[[str, str], AnyCommand]) -> Reply:
        command_id = uuid.uuid4().hex
        reply_to = f"{self.namespace}reply:{command_id}"
        command = make(command_id, reply_to)
        for attempt in range(2):
            owner, alive = await self.directory.owner(command.call_id)
            if owner is None:
                raise CommandFailed(f"call {command.call_id} is not live on any node")
            if not alive:
                raise CommandFailed(
                    f"call {command.call_id} is held by node {owner}, which is not answering "
                    "(orphaned: it will resume when Retell reconnects it to another node)"
                )
            reply = await self._exchange(owner, command)
            if reply.ok:
                return reply
            if reply.error == "not_here" and attempt == 0:
                continue  # it moved between the look-up and the command
            raise CommandFailed(_explain(command.call_id, reply))
        raise CommandFailed(f"call {command.call_id} kept moving between nodes")  # pragma: no cover

    async def _exchange(self, owner: str, command: AnyCommand) -> Reply:
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(command.reply_to)
            receivers = await self.client.publish(
                command_channel(self.namespace, owner), encode(command)
            )
            if receivers == 0:
                raise CommandFailed(
                    f"node {owner} holds call {command.call_id} but is not listening"
                )
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
                raise CommandFailed(
                    f"node {owner} did not answer within {self.timeout_s:g} s"
                ) from None
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()  # type: ignore[no-untyped-call]


def _explain(call_id: str, reply: Reply) -> str:
    if reply.error == "not_here":
        return f"call {call_id} is no longer on node {reply.node}"
    if reply.error == "call_gone":
        return f"call {call_id} ended or its socket closed on node {reply.node}"
    return f"node {reply.node} refused the command: {reply.error} {reply.detail}".strip()

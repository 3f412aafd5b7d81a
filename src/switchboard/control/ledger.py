"""The cluster-wide record of commands carried out: each command id acts at most once.

A sender that lost a reply (a timeout, a crash, the call moving to another node) asks
again with the same id, maybe on another node. Before acting, the owning node claims the
id with ``SET NX`` (a marker, ``in_progress``); after acting it records the reply in
its place. A node that finds the id taken answers with what is recorded and does not
act. A command that was not carried out (the socket closed first) lets the id go, so
the call's next owner may still carry it out.

A node killed between claiming the id and recording the outcome leaves the marker until
it expires: that command is answered ``in_progress`` and never carried out again (at
most once beats twice for a transfer). Records live ``RECORD_TTL_S``, longer than any
sender retries.
"""

from __future__ import annotations

import msgspec
from redis.asyncio import Redis

from switchboard.control.commands import IN_PROGRESS, Reply, decode_reply, encode

#: How long an id is remembered (a call's state lives an hour too).
RECORD_TTL_S = 3600


def record_key(namespace: str, command_id: str) -> str:
    return f"{namespace}command:{command_id}"


class CommandLedger:
    def __init__(self, client: Redis, *, namespace: str, ttl_s: int = RECORD_TTL_S) -> None:
        self.client = client
        self.namespace = namespace
        self.ttl_s = ttl_s

    async def begin(self, command_id: str, node_id: str) -> Reply | None:
        """``None``: the id is ours, act now. Otherwise what is recorded for it (an
        outcome, or ``in_progress`` while another attempt acts). Raises ``RedisError``."""
        key = record_key(self.namespace, command_id)
        marker = Reply(id=command_id, ok=False, node=node_id, error=IN_PROGRESS)
        if await self.client.set(key, encode(marker), nx=True, ex=self.ttl_s):
            return None
        return await self.recorded(command_id) or marker

    async def recorded(self, command_id: str) -> Reply | None:
        """What is recorded for the id, or ``None`` if nothing is (or it is unreadable)."""
        raw = await self.client.get(record_key(self.namespace, command_id))
        if raw is None:
            return None
        try:
            return decode_reply(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return Reply(id=command_id, ok=False, node="", error=IN_PROGRESS, detail="unreadable")

    async def finish(self, reply: Reply) -> None:
        await self.client.set(record_key(self.namespace, reply.id), encode(reply), ex=self.ttl_s)

    async def release(self, command_id: str) -> None:
        """The command was not carried out: a later attempt may act."""
        await self.client.delete(record_key(self.namespace, command_id))

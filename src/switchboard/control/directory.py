"""The live-call directory: which node holds which call, and which nodes are alive.

Each node refreshes ``{ns}node:{node_id}`` (its ``NodeInfo``, expiring after three
missed heartbeats) and is listed in ``{ns}nodes``. The calls come from the store's
``{ns}live`` set and each call's ``owner`` (written by the claim script). A call whose
owner has no live heartbeat is *orphaned*: its node died and Retell has not yet
reconnected it elsewhere (or the caller hung up while the node was dead).
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
from redis.asyncio import Redis

from switchboard.connections import text


class NodeInfo(msgspec.Struct, kw_only=True):
    node_id: str
    host: str = ""
    port: int = 0
    pid: int = 0
    started_at_ms: int = 0
    active_calls: int = 0
    max_calls: int = 0
    draining: bool = False
    heartbeat_at_ms: int = 0


class LiveCall(msgspec.Struct, kw_only=True):
    call_id: str
    owner: str
    epoch: int
    since_ms: int
    owner_alive: bool

    @property
    def orphaned(self) -> bool:
        return not self.owner_alive


_node_decoder = msgspec.json.Decoder(NodeInfo)


def command_channel(namespace: str, node_id: str) -> str:
    return f"{namespace}node:{node_id}:commands"


class Directory:
    def __init__(self, client: Redis, namespace: str = "switchboard:") -> None:
        self.client = client
        self.namespace = namespace
        self.nodes_key = f"{namespace}nodes"
        self.live_key = f"{namespace}live"

    def node_key(self, node_id: str) -> str:
        return f"{self.namespace}node:{node_id}"

    def call_key(self, call_id: str) -> str:
        return f"{self.namespace}call:{call_id}"

    async def heartbeat(self, info: NodeInfo, ttl_ms: int) -> None:
        info.heartbeat_at_ms = int(time.time() * 1000)
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.set(self.node_key(info.node_id), msgspec.json.encode(info), px=ttl_ms)
            pipe.sadd(self.nodes_key, info.node_id)
            await pipe.execute()

    async def forget_node(self, node_id: str) -> None:
        """A node that stops cleanly leaves the directory at once."""
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.delete(self.node_key(node_id))
            pipe.srem(self.nodes_key, node_id)
            await pipe.execute()

    async def nodes(self) -> list[NodeInfo]:
        """Nodes with a live heartbeat, by id; ids whose heartbeat expired are pruned."""
        ids = sorted(text(m) for m in await self.client.smembers(self.nodes_key))
        if not ids:
            return []
        blobs = await self.client.mget([self.node_key(i) for i in ids])
        alive = []
        for blob in blobs:
            if blob is None:
                continue
            try:
                alive.append(_node_decoder.decode(blob))
            except (msgspec.DecodeError, msgspec.ValidationError):
                continue
        return alive

    async def calls(self) -> list[LiveCall]:
        """Every call some node holds, oldest first. Entries whose state expired are pruned."""
        raw: Any = await self.client.zrange(self.live_key, 0, -1, withscores=True)
        entries = [(text(member), float(score)) for member, score in raw]
        if not entries:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            for call_id, _ in entries:
                pipe.hmget(self.call_key(call_id), ["owner", "epoch"])
            fields = await pipe.execute(raise_on_error=False)
        alive = {n.node_id for n in await self.nodes()}
        calls, gone = [], []
        for (call_id, score), row in zip(entries, fields, strict=True):
            if isinstance(row, Exception) or row[0] is None:
                gone.append(call_id)
                continue
            owner = text(row[0])
            try:
                epoch = int(row[1])
            except (TypeError, ValueError):
                epoch = 0
            calls.append(
                LiveCall(
                    call_id=call_id,
                    owner=owner,
                    epoch=epoch,
                    since_ms=int(score),
                    owner_alive=owner in alive,
                )
            )
        if gone:
            await self.client.zrem(self.live_key, *gone)
        return calls

    async def owner(self, call_id: str) -> tuple[str | None, bool]:
        """(owner node id or ``None``, whether that node's heartbeat is alive)."""
        try:
            value = await self.client.hget(self.call_key(call_id), "owner")
        except Exception as exc:
            if "WRONGTYPE" in str(exc):
                return None, False
            raise
        if not value:
            return None, False
        owner = text(value)
        return owner, bool(await self.client.exists(self.node_key(owner)))

"""The live-call directory: which node holds which call, and which nodes are alive.

Each node refreshes ``{ns}node:{node_id}`` (its ``NodeInfo``, expiring after three
missed heartbeats) and is listed in ``{ns}nodes``. The calls come from the store's
``{ns}live`` set and each call's ``owner`` (written by the claim script). A call whose
owner has no live heartbeat is *orphaned*: its node died and Retell has not yet
reconnected it elsewhere (or the caller hung up while the node was dead).

A call no node can hold any more is a *ghost* and leaves ``{ns}live``:

* its state is gone (expired, deleted) or names no owner;
* its owner's heartbeat expired more than three heartbeats ago. Each beat also sets
  ``{ns}node:{node_id}:holds`` (the node's start time) to expire after *six* beats, so
  the rule needs no clock: the marker is gone exactly when the rule says so. A call that
  Retell reconnects later is added again by its claim;
* its owner restarted (same node id) after the claim: a process holds only the calls it
  claimed itself, and a claim of the new process would have moved the call's score
  (its claim time) past the process's start.

Pruning is checked again inside one script, so a call claimed again between the read
and the removal stays listed. ``calls`` prunes what it reads; each node also prunes one
page of the set per heartbeat (``prune_page``), so ghosts leave even when nobody lists.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
from redis.asyncio import Redis

from switchboard.connections import text

# KEYS: live set, then per candidate: call hash, its expected owner's "holds" marker and
# heartbeat key. ARGV: n call ids, then their n expected owners. -> the ids removed.
# A candidate is removed only if, now: its hash is gone, is not a hash, or names no
# owner; or it still names the expected owner and that owner's marker says the owner
# started after the call's claim, or is gone while its heartbeat is gone too (a node
# of an older release beats without a marker).
_PRUNE = """
local n = #ARGV / 2
local removed = {}
for i = 1, n do
  local call_id = ARGV[i]
  local key = KEYS[3 * i - 1]
  local ghost = false
  local kind = redis.call('TYPE', key)['ok']
  if kind ~= 'hash' then
    ghost = true
  else
    local owner = redis.call('HGET', key, 'owner')
    if not owner then
      ghost = true
    elseif owner == ARGV[n + i] then
      local started = redis.call('GET', KEYS[3 * i])
      if not started then
        ghost = redis.call('EXISTS', KEYS[3 * i + 1]) == 0
      else
        local since = tonumber(redis.call('ZSCORE', KEYS[1], call_id))
        local s = tonumber(started)
        if since and s and since < s then ghost = true end
      end
    end
  end
  if ghost and redis.call('ZREM', KEYS[1], call_id) == 1 then
    removed[#removed + 1] = call_id
  end
end
return removed
"""


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


# KEYS: live set, then the call hashes. ARGV: node id, now ms, then the call ids.
# -> how many were listed again (those whose hash still names the node as owner).
_RELIST = """
local listed = 0
for i = 2, #KEYS do
  if redis.call('TYPE', KEYS[i])['ok'] == 'hash'
      and redis.call('HGET', KEYS[i], 'owner') == ARGV[1] then
    listed = listed + redis.call('ZADD', KEYS[1], 'NX', ARGV[2], ARGV[i + 1])
  end
end
return listed
"""


class Directory:
    def __init__(self, client: Redis, namespace: str = "switchboard:") -> None:
        self.client = client
        self.namespace = namespace
        self.nodes_key = f"{namespace}nodes"
        self.live_key = f"{namespace}live"
        self._prune = client.register_script(_PRUNE)
        self._relist = client.register_script(_RELIST)
        #: ghosts this process removed from the live set
        self.pruned = 0

    def node_key(self, node_id: str) -> str:
        return f"{self.namespace}node:{node_id}"

    def holds_key(self, node_id: str) -> str:
        """The marker that says ``node_id`` may still hold calls (see the module doc)."""
        return f"{self.namespace}node:{node_id}:holds"

    def call_key(self, call_id: str) -> str:
        return f"{self.namespace}call:{call_id}"

    async def heartbeat(self, info: NodeInfo, ttl_ms: int) -> bool:
        """Refresh the node's entry (expires after ``ttl_ms``, three beats) and its
        ``holds`` marker (expires ``ttl_ms`` later still). Returns whether the entry was
        still there: when it was not (it expired, or Redis lost its data), other nodes
        may have pruned this node's calls as ghosts, and the caller lists them again."""
        info.heartbeat_at_ms = int(time.time() * 1000)
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.set(self.node_key(info.node_id), msgspec.json.encode(info), px=ttl_ms, get=True)
            pipe.set(self.holds_key(info.node_id), info.started_at_ms, px=2 * ttl_ms)
            pipe.sadd(self.nodes_key, info.node_id)
            previous, _, _ = await pipe.execute()
        return previous is not None

    async def forget_node(self, node_id: str, linger_ms: int = 0) -> None:
        """A node that stops cleanly leaves the directory at once; calls it still lists
        (handed off, reconnecting elsewhere) are pruned after ``linger_ms``."""
        async with self.client.pipeline(transaction=False) as pipe:
            pipe.delete(self.node_key(node_id))
            pipe.srem(self.nodes_key, node_id)
            if linger_ms > 0:
                pipe.pexpire(self.holds_key(node_id), linger_ms)
            else:
                pipe.delete(self.holds_key(node_id))
            await pipe.execute()

    async def relist(self, node_id: str, call_ids: list[str], chunk: int = 500) -> int:
        """List again the calls ``node_id`` holds and still owns; returns how many were
        missing. For a node whose heartbeat stalled long enough for others to prune its
        calls (a stalled event loop, a long Redis outage): they are back at its next beat,
        not only at their next reconnect."""
        listed = 0
        now_ms = int(time.time() * 1000)
        for start in range(0, len(call_ids), chunk):
            part = call_ids[start : start + chunk]
            keys = [self.live_key, *(self.call_key(c) for c in part)]
            found: Any = await self._relist(keys=keys, args=[node_id, now_ms, *part])
            listed += int(found)
        return listed

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
        """Every call some node holds, oldest first. Ghosts are pruned, not listed."""
        raw: Any = await self.client.zrange(self.live_key, 0, -1, withscores=True)
        return await self._sift(raw)

    async def prune_page(self, offset: int, count: int = 1000) -> int:
        """Prune the ghosts among ``count`` entries of the live set from ``offset``;
        returns the offset of the next page (0 once the end is reached)."""
        raw: Any = await self.client.zrange(
            self.live_key, offset, offset + count - 1, withscores=True
        )
        if not raw:
            return 0
        calls = await self._sift(raw)
        return 0 if len(raw) < count else offset + len(calls)

    async def _sift(self, raw: Any) -> list[LiveCall]:
        """The calls among ``raw`` (live-set members with scores) that are not ghosts;
        the ghosts are removed from the live set."""
        entries = [(text(member), float(score)) for member, score in raw]
        if not entries:
            return []
        async with self.client.pipeline(transaction=False) as pipe:
            for call_id, _ in entries:
                pipe.hmget(self.call_key(call_id), ["owner", "epoch"])
            fields = await pipe.execute(raise_on_error=False)
        owners = sorted(
            {text(row[0]) for row in fields if not isinstance(row, Exception) and row[0]}
        )
        started = await self._started(owners)
        alive = {n.node_id for n in await self.nodes()}
        calls: list[LiveCall] = []
        suspects: list[tuple[str, str]] = []
        for (call_id, score), row in zip(entries, fields, strict=True):
            if isinstance(row, Exception) or row[0] is None:
                suspects.append((call_id, ""))
                continue
            owner = text(row[0])
            since = started.get(owner, 0.0 if owner in alive else None)
            if since is None or score < since:
                suspects.append((call_id, owner))
                continue
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
        if suspects:
            # a suspect the script keeps changed meanwhile (claimed again): the next
            # read lists it
            await self._remove_ghosts(suspects)
        return calls

    async def _started(self, owners: list[str]) -> dict[str, float]:
        """Start time (ms) of each owner whose ``holds`` marker is still set."""
        if not owners:
            return {}
        values = await self.client.mget([self.holds_key(o) for o in owners])
        started: dict[str, float] = {}
        for owner, value in zip(owners, values, strict=True):
            if value is None:
                continue
            try:
                started[owner] = float(text(value))
            except ValueError:
                started[owner] = 0.0  # unreadable marker: trust the heartbeat, prune nothing
        return started

    async def _remove_ghosts(self, suspects: list[tuple[str, str]]) -> list[str]:
        keys = [self.live_key]
        for call_id, owner in suspects:
            holder = owner or "-"
            keys += [self.call_key(call_id), self.holds_key(holder), self.node_key(holder)]
        args = [call_id for call_id, _ in suspects] + [owner for _, owner in suspects]
        removed: Any = await self._prune(keys=keys, args=args)
        ids = [text(r) for r in removed]
        self.pruned += len(ids)
        return ids

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

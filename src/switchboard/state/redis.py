"""``CallStore`` in Redis, for the profiles where a reconnect may land on another node.

Layout, under the deployment's ``namespace`` (default ``switchboard:``):

* ``{ns}call:{call_id}``: a hash ``epoch``, ``version``, ``owner`` (node id), ``token``
  (the owner token of the claim that holds the call) and ``data`` (the ``CallState`` as
  JSON, exactly as the memory store holds it), with a TTL refreshed on every claim and
  save;
* ``{ns}live``: a sorted set of the calls currently held by some node (score: claim time
  in ms), which the live-call directory lists;
* ``{ns}claims``: a channel on which every claim is announced, so an older owner that
  still holds a socket for the call checks the call's token and drops it at once instead
  of at its next save. Even a claim that finds nothing stored is announced: the call's
  key may have been lost (evicted, expired) under a socket that still serves it;
* ``{ns}store-marker:{node_id}``: a key each node writes when it starts; its absence
  tells that node that Redis lost its data (restarted empty, flushed), so it writes its
  live calls back;
* ``{ns}store-lost``: set for a while by the first node that notices such a loss, so that
  a claim finding nothing then is treated as a call that may be under way.

Every race is answered inside a Lua script (claim, save, reclaim, release), so two nodes
can never both believe they own a call: the token in the hash is the only truth, and a
write that carries another token is refused. A save never recreates a missing call: it
reports ``StateLost`` and the owner reclaims it explicitly, which fails if another claim
got there first. Counters are parsed defensively inside the scripts (at most 12 digits),
so a value that is not a small whole number (``-5``, ``2**70``, ``abc``) is logged and
replaced by a fresh call; it never makes a call unservable or raises into a session.

Nothing here runs before a turn's first chunk: a session claims once per socket and
saves once per completed turn, before that turn's ``content_complete``.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from switchboard import tracing
from switchboard.connections import RedisHealth, is_link_error, text
from switchboard.log import get_logger
from switchboard.state.base import (
    CallState,
    FencedOut,
    StaleWrite,
    StateLost,
    StoreUnavailable,
)
from switchboard.state.script_batch import ScriptBatch

_log = get_logger("switchboard.state.redis")
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(CallState)

# A stored counter is trusted only as 1 to 12 digits: Lua numbers are doubles, and
# anything longer could come back from HSET as "1e+15", which nothing can parse.
_COUNT = """
local function count(v)
  if not v then return nil, false end
  if string.len(v) <= 12 and string.match(v, '^%d+$') then return tonumber(v), false end
  return nil, true
end
"""

# KEYS: call hash, live set, claims channel, the owner's store marker, the loss notice.
# ARGV: owner, ttl ms, now ms, call id, token.
# -> {epoch, version, data or "", reset (1: something unusable was replaced),
#     lost (1: nothing stored, and the store lost its data lately)}
_CLAIM = (
    _COUNT
    + """
local kind = redis.call('TYPE', KEYS[1])['ok']
local reset = 0
if kind ~= 'none' and kind ~= 'hash' then
  redis.call('DEL', KEYS[1]); reset = 1
end
local cur = redis.call('HMGET', KEYS[1], 'epoch', 'version', 'data')
local epoch, bad_epoch = count(cur[1])
local version, bad_version = count(cur[2])
local data = cur[3]
if bad_epoch or bad_version then
  redis.call('DEL', KEYS[1]); reset = 1
  epoch = nil; version = nil; data = false
end
epoch = (epoch or 0) + 1
if epoch > 999999999999 then epoch = 1 end
version = version or 0
redis.call('HSET', KEYS[1], 'epoch', epoch, 'version', version, 'owner', ARGV[1],
  'token', ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
redis.call('PUBLISH', KEYS[3], ARGV[4] .. ' ' .. epoch .. ' ' .. ARGV[1])
local lost = 0
if not data and (redis.call('EXISTS', KEYS[4]) == 0 or redis.call('EXISTS', KEYS[5]) == 1) then
  lost = 1
  redis.call('HSET', KEYS[1], 'lost', 1)
end
return {epoch, version, data or '', reset, lost}
"""
)

# KEYS: call hash. ARGV: token, version, data, ttl ms.
# -> {0, new version} | {-1, stored epoch} (fenced) | {-2, stored version} (stale)
#    | {-3, 0} (lost: not stored, or not a call)
_SAVE = (
    _COUNT
    + """
if redis.call('TYPE', KEYS[1])['ok'] ~= 'hash' then return {-3, 0} end
local cur = redis.call('HMGET', KEYS[1], 'token', 'version', 'epoch')
if cur[1] ~= ARGV[1] then return {-1, cur[3] or ''} end
local version = count(cur[2])
if version ~= tonumber(ARGV[2]) then return {-2, version or -1} end
local nv = version + 1
redis.call('HSET', KEYS[1], 'version', nv, 'data', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {0, nv}
"""
)

# KEYS: call hash, live set, claims channel.
# ARGV: token, owner, data, ttl ms, now ms, call id, epoch, version.
# -> {0, new version} | {-1, 0} (another claim holds the call)
_RECLAIM = (
    _COUNT
    + """
local kind = redis.call('TYPE', KEYS[1])['ok']
local version = tonumber(ARGV[8])
if kind == 'hash' then
  local cur = redis.call('HMGET', KEYS[1], 'token', 'version')
  if cur[1] ~= ARGV[1] then return {-1, 0} end
  local stored = count(cur[2])
  if stored and stored > version then version = stored end
elseif kind ~= 'none' then
  redis.call('DEL', KEYS[1])
end
local nv = version + 1
redis.call('HSET', KEYS[1], 'epoch', ARGV[7], 'version', nv, 'owner', ARGV[2],
  'token', ARGV[1], 'data', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[6])
if kind ~= 'hash' then
  redis.call('PUBLISH', KEYS[3], ARGV[6] .. ' ' .. ARGV[7] .. ' ' .. ARGV[2])
end
return {0, nv}
"""
)

# KEYS: call hash. ARGV: token, data, ttl ms, epoch, version.
# -> 1 written, 2 handed to a claim waiting for it (see ``claim``), 0 stored already
_RESTORE = (
    _COUNT
    + """
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'epoch', ARGV[4], 'version', ARGV[5], 'token', ARGV[1],
    'data', ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
local cur = redis.call('HMGET', KEYS[1], 'lost', 'data', 'version')
if cur[1] and not cur[2] then
  local version = count(cur[3]) or 0
  redis.call('HSET', KEYS[1], 'data', ARGV[2], 'version', version + 1)
  redis.call('HDEL', KEYS[1], 'lost')
  return 2
end
return 0
"""
)

# KEYS: call hash, live set. ARGV: token, call id. -> 1 released, 0 another claim holds it
_RELEASE = """
if redis.call('TYPE', KEYS[1])['ok'] == 'hash' then
  local token = redis.call('HGET', KEYS[1], 'token')
  if token and token ~= ARGV[1] then return 0 end
  redis.call('HDEL', KEYS[1], 'owner')
end
redis.call('ZREM', KEYS[2], ARGV[2])
return 1
"""


def new_token() -> str:
    """An owner token: random, so no two claims ever share one, whatever Redis forgot."""
    return uuid.uuid4().hex


class RedisCallStore:
    """The shared ``CallStore``. ``health`` is shared with the node's other Redis users,
    so one outage is logged and counted once, and saves wait for the same recovery."""

    def __init__(
        self,
        client: Redis,
        *,
        namespace: str = "switchboard:",
        ttl_s: float = 3600.0,
        health: RedisHealth | None = None,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self.health = health if health is not None else RedisHealth(client)
        self.live_key = f"{namespace}live"
        self.claims_channel = f"{namespace}claims"
        self._claim = client.register_script(_CLAIM)
        #: every script call goes out through one batch per store (``ScriptBatch``)
        self._batch = ScriptBatch(client)
        self._save = client.register_script(_SAVE)
        self._reclaim = client.register_script(_RECLAIM)
        self._release = client.register_script(_RELEASE)
        self._restore = client.register_script(_RESTORE)
        self.loss_key = f"{namespace}store-lost"

    def call_key(self, call_id: str) -> str:
        return f"{self.namespace}call:{call_id}"

    # ------------------------------------------------------------------ CallStore

    async def claim(self, call_id: str, owner: str) -> CallState:
        token = new_token()
        keys = [
            self.call_key(call_id),
            self.live_key,
            self.claims_channel,
            self.marker_key(owner),
            self.loss_key,
        ]
        args = [owner, self.ttl_ms, int(time.time() * 1000), call_id, token]
        epoch, version, data, reset, lost = await self._run(self._claim, keys, args)
        if reset:
            _log.warning("unusable value under the call's key replaced", call_id=call_id)
        state = self._decode(call_id, data) if data else None
        if state is None:
            state = CallState(call_id=call_id)
        state.epoch = int(epoch)
        state.version = int(version)
        state.token = token
        state.lost = bool(lost)
        return state

    async def restore(self, state: CallState) -> bool:
        blob = _encoder.encode(state)
        keys = [self.call_key(state.call_id)]
        args = [state.token, blob, self.ttl_ms, state.epoch, state.version]
        return bool(await self._run(self._restore, keys, args))

    async def save(self, state: CallState) -> None:
        blob = _encoder.encode(state)
        key = self.call_key(state.call_id)
        args = [state.token, state.version, blob, self.ttl_ms]
        if tracing.ENABLED:
            with tracing.child(None, "redis.save", **_save_attributes(len(blob))):
                outcome, value = await self._run(self._save, [key], args)
        else:
            outcome, value = await self._run(self._save, [key], args)
        if outcome == -1:
            raise FencedOut(f"call {state.call_id} is held by another claim (epoch {text(value)})")
        if outcome == -2:
            raise StaleWrite(f"call {state.call_id} is at version {value}, not {state.version}")
        if outcome == -3:
            raise StateLost(f"call {state.call_id} is no longer stored")
        state.version = int(value)

    async def reclaim(self, state: CallState, owner: str) -> bool:
        blob = _encoder.encode(state)
        keys = [self.call_key(state.call_id), self.live_key, self.claims_channel]
        args = [
            state.token,
            owner,
            blob,
            self.ttl_ms,
            int(time.time() * 1000),
            state.call_id,
            state.epoch,
            state.version,
        ]
        outcome, value = await self._run(self._reclaim, keys, args)
        if outcome == -1:
            return False
        state.version = int(value)
        return True

    async def load(self, call_id: str) -> CallState | None:
        fields = await self._fields(call_id, "epoch", "version", "token", "data")
        if fields is None:
            return None
        epoch, version, token, data = fields
        if epoch is None:
            return None
        if data is None:  # claimed, never saved yet
            state: CallState | None = CallState(call_id=call_id)
        else:
            state = self._decode(call_id, data if isinstance(data, bytes) else data.encode())
        if state is None:
            return None
        parsed_epoch, parsed_version = _count(epoch), _count(version)
        if parsed_epoch is None or parsed_version is None:
            return None
        state.epoch, state.version, state.token = parsed_epoch, parsed_version, text(token)
        return state

    async def owner(self, call_id: str) -> str | None:
        """The node that holds the call now, or ``None`` if none does."""
        fields = await self._fields(call_id, "owner")
        return text(fields[0]) or None if fields is not None else None

    async def latest_claim(self, call_id: str) -> str | None:
        if not self.health.is_up:
            raise StoreUnavailable("redis is unreachable")
        fields = await self._fields(call_id, "token")
        if fields is None or fields[0] is None:
            return None
        return text(fields[0])

    async def _fields(self, call_id: str, *names: str) -> list[Any] | None:
        """Fields of the call's hash; ``None`` when the key holds something else."""
        try:
            return list(await self.client.hmget(self.call_key(call_id), list(names)))
        except RedisError as exc:
            if "WRONGTYPE" in str(exc):
                return None
            raise self._unavailable(exc) from exc
        except OSError as exc:
            raise self._unavailable(exc) from exc

    async def release(self, call_id: str, token: str) -> None:
        # Nobody waits on a release: it rides on the next batch (``ScriptBatch.run``).
        keys = [self.call_key(call_id), self.live_key]
        await self._run(self._release, keys, [token, call_id], soon=False)

    async def wait_available(self) -> None:
        await self.health.wait_up()

    async def delete(self, call_id: str) -> None:
        try:
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.delete(self.call_key(call_id))
                pipe.zrem(self.live_key, call_id)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise self._unavailable(exc) from exc

    def marker_key(self, node_id: str) -> str:
        return f"{self.namespace}store-marker:{node_id}"

    async def mark(self, node_id: str) -> bool:
        """Make sure ``node_id``'s store marker exists; ``True`` if it had to be written,
        which after the node's first call means Redis lost its data (restarted empty,
        flushed). Each node has its own: the first to notice must not hide it from others."""
        try:
            created = await self.client.set(self.marker_key(node_id), new_token(), nx=True)
        except (RedisError, OSError) as exc:
            raise self._unavailable(exc) from exc
        return bool(created)

    async def note_loss(self, for_s: float) -> None:
        """Tell every node's claims, for ``for_s``, that a call found missing may be one
        the store lost (so a reconnect of it is not greeted as a new call)."""
        try:
            await self.client.set(self.loss_key, "1", px=max(1, int(for_s * 1000)))
        except (RedisError, OSError) as exc:
            raise self._unavailable(exc) from exc

    async def connect(self) -> None:
        """Open the socket the store's scripts go out on (``ScriptBatch.connect``)."""
        try:
            await self._batch.connect()
        except (RedisError, OSError) as exc:
            raise self._unavailable(exc) from exc

    async def close(self) -> None:
        await self._batch.close()
        await self.health.close()

    # ------------------------------------------------------------------ helpers

    async def _run(
        self, script: Any, keys: list[str], args: list[Any], *, soon: bool = True
    ) -> Any:
        if not self.health.is_up:
            raise StoreUnavailable("redis is unreachable")
        try:
            return await self._batch.run(script, keys, args, soon=soon)
        except (RedisError, OSError) as exc:
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: BaseException) -> Exception:
        if is_link_error(exc):
            self.health.down(exc)
            return StoreUnavailable(f"redis is unreachable: {exc}")
        return exc if isinstance(exc, Exception) else RuntimeError(str(exc))

    @staticmethod
    def _decode(call_id: str, data: bytes) -> CallState | None:
        try:
            state = _decoder.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
            _log.warning(
                "undecodable call state ignored; the call starts fresh",
                call_id=call_id,
                error=str(exc)[:200],
            )
            return None
        if state.call_id != call_id:
            _log.warning(
                "call state of another call under this key ignored",
                call_id=call_id,
                found=state.call_id[:64],
            )
            return None
        return state


def _count(value: object) -> int | None:
    """A stored counter, as the scripts accept it (1 to 12 digits), else ``None``."""
    raw = text(value)
    if not raw or len(raw) > 12 or not raw.isascii() or not raw.isdigit():
        return None
    return int(raw)


def _save_attributes(size: int) -> dict[str, object]:
    """The save span's attributes (database semantic conventions)."""
    return {
        "db.system.name": "redis",
        "db.operation.name": "EVALSHA",
        "switchboard.state.bytes": size,
    }

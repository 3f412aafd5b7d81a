"""``CallStore`` in Redis, for the profiles where a reconnect may land on another node.

Layout, under the deployment's ``namespace`` (default ``switchboard:``):

* ``{ns}call:{call_id}``: a hash ``epoch``, ``version``, ``owner`` (node id) and
  ``data`` (the ``CallState`` as JSON, exactly as the memory store holds it), with a TTL
  refreshed on every claim and save;
* ``{ns}live``: a sorted set of the calls currently held by some node (score: claim time
  in ms), which the live-call directory lists;
* ``{ns}claims``: a channel on which every claim is announced, so an older owner that
  still holds a socket for the call drops it at once instead of at its next save.

Every race is answered inside a Lua script (claim, save, release), so two nodes can
never both believe they own a call: the epoch in the hash is the only truth, and a save
that carries an older epoch is refused. A key that holds something else (a foreign
value, a hash without numbers, JSON that does not decode) is logged and replaced by a
fresh call; it never raises into a session.

Nothing here runs before a turn's first chunk: a session claims once per socket and
saves after each completed turn.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from switchboard.connections import RedisHealth, is_link_error, text
from switchboard.log import get_logger
from switchboard.state.base import CallState, FencedOut, StaleWrite, StoreUnavailable

_log = get_logger("switchboard.state.redis")
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(CallState)

# KEYS: call hash, live set, claims channel. ARGV: owner, ttl ms, now ms, call id.
# -> {epoch, version, data or "", reset (1: something unusable was replaced)}
_CLAIM = """
local kind = redis.call('TYPE', KEYS[1])['ok']
local reset = 0
if kind ~= 'none' and kind ~= 'hash' then
  redis.call('DEL', KEYS[1]); reset = 1
end
local cur = redis.call('HMGET', KEYS[1], 'epoch', 'version', 'data')
local epoch = tonumber(cur[1])
local version = tonumber(cur[2])
local data = cur[3]
if (cur[1] and not epoch) or (cur[2] and not version) then
  redis.call('DEL', KEYS[1]); reset = 1
  epoch = nil; version = nil; data = false
end
epoch = (epoch or 0) + 1
version = version or 0
redis.call('HSET', KEYS[1], 'epoch', epoch, 'version', version, 'owner', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
redis.call('PUBLISH', KEYS[3], ARGV[4] .. ' ' .. epoch .. ' ' .. ARGV[1])
return {epoch, version, data or '', reset}
"""

# KEYS: call hash. ARGV: epoch, version, data, ttl ms.
# -> {0, new version} | {-1, stored epoch} (fenced) | {-2, stored version} (stale)
_SAVE = """
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind == 'hash' then
  local cur = redis.call('HMGET', KEYS[1], 'epoch', 'version')
  local e = tonumber(cur[1])
  local v = tonumber(cur[2])
  if e and e > tonumber(ARGV[1]) then return {-1, e} end
  if v and v ~= tonumber(ARGV[2]) then return {-2, v} end
elseif kind ~= 'none' then
  redis.call('DEL', KEYS[1])
end
local nv = tonumber(ARGV[2]) + 1
redis.call('HSET', KEYS[1], 'epoch', ARGV[1], 'version', nv, 'data', ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {0, nv}
"""

# KEYS: call hash, live set. ARGV: epoch, call id. -> 1 released, 0 a newer claim holds it
_RELEASE = """
if redis.call('TYPE', KEYS[1])['ok'] == 'hash' then
  local e = tonumber(redis.call('HGET', KEYS[1], 'epoch'))
  if e and e > tonumber(ARGV[1]) then return 0 end
  redis.call('HDEL', KEYS[1], 'owner')
end
redis.call('ZREM', KEYS[2], ARGV[2])
return 1
"""


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
        self._save = client.register_script(_SAVE)
        self._release = client.register_script(_RELEASE)

    def call_key(self, call_id: str) -> str:
        return f"{self.namespace}call:{call_id}"

    # ------------------------------------------------------------------ CallStore

    async def claim(self, call_id: str, owner: str) -> CallState:
        keys = [self.call_key(call_id), self.live_key, self.claims_channel]
        args = [owner, self.ttl_ms, int(time.time() * 1000), call_id]
        epoch, version, data, reset = await self._run(self._claim, keys, args)
        if reset:
            _log.warning("unusable value under the call's key replaced", call_id=call_id)
        state = self._decode(call_id, data) if data else None
        if state is None:
            state = CallState(call_id=call_id)
        state.epoch = int(epoch)
        state.version = int(version)
        return state

    async def save(self, state: CallState) -> None:
        blob = _encoder.encode(state)
        keys = [self.call_key(state.call_id)]
        args = [state.epoch, state.version, blob, self.ttl_ms]
        outcome, value = await self._run(self._save, keys, args)
        if outcome == -1:
            raise FencedOut(f"call {state.call_id} was claimed again (epoch {value})")
        if outcome == -2:
            raise StaleWrite(f"call {state.call_id} is at version {value}, not {state.version}")
        state.version = int(value)

    async def load(self, call_id: str) -> CallState | None:
        try:
            fields = await self.client.hmget(self.call_key(call_id), ["epoch", "version", "data"])
        except RedisError as exc:
            if "WRONGTYPE" in str(exc):
                return None
            raise self._unavailable(exc) from exc
        except OSError as exc:
            raise self._unavailable(exc) from exc
        epoch, version, data = fields
        if data is None:
            return None
        state = self._decode(call_id, data if isinstance(data, bytes) else data.encode())
        if state is None:
            return None
        try:
            state.epoch = int(text(epoch))
            state.version = int(text(version))
        except ValueError:
            return None
        return state

    async def owner(self, call_id: str) -> str | None:
        """The node that holds the call now, or ``None`` if none does."""
        try:
            value = await self.client.hget(self.call_key(call_id), "owner")
        except RedisError as exc:
            if "WRONGTYPE" in str(exc):
                return None
            raise self._unavailable(exc) from exc
        return text(value) or None

    async def release(self, call_id: str, epoch: int) -> None:
        await self._run(self._release, [self.call_key(call_id), self.live_key], [epoch, call_id])

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

    async def close(self) -> None:
        await self.health.close()

    # ------------------------------------------------------------------ helpers

    async def _run(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        if not self.health.is_up:
            raise StoreUnavailable("redis is unreachable")
        try:
            return await script(keys=keys, args=args)
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
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
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

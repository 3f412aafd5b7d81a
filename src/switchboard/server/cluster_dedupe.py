"""Webhook dedupe across nodes: a retry that the load balancer sends to another node is
still delivered once, and an event is never lost to its own claim.

The per-process ``WebhookDedupe`` decides first (no round trip for the retries it has
seen itself); what it would deliver is then claimed cluster-wide in Redis under a
stable key of the event (``WebhookDedupe.identity``). A once-only event's claim is
``pending`` for ``claim_ttl_s`` (15 s) until the event is durable (in the outbox's spill
file or on the bus): then ``confirm`` makes it ``done`` for ``ttl_s``. A retry that
meets a ``pending`` claim is answered 503 (``IN_FLIGHT``), so Retell tries again; if
the node holding the claim died before the event was safe, the claim expires and the
next retry is delivered. A delivery that failed ``release``s its claim at once.
Latest-wins ``transcript_updated`` keeps its compare-and-set script (a lost update is
superseded by the next one). If Redis cannot be reached the event is delivered:
at-least-once is the promise.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import RedisError

from switchboard.connections import RedisHealth
from switchboard.protocol.webhook import WebhookEvent
from switchboard.server.dedupe import Verdict, WebhookDedupe

# KEYS: entry. ARGV: items, last length, ended (0/1), ttl ms. -> 0 deliver, 1 equal, 2 behind
_LATEST = """
local cur = redis.call('GET', KEYS[1])
local new = {tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])}
if cur then
  local old = {}
  for n in string.gmatch(cur, '[^,]+') do old[#old + 1] = tonumber(n) end
  if #old == 3 then
    local order = 0
    for i = 1, 3 do
      if order == 0 and new[i] ~= old[i] then order = (new[i] > old[i]) and 1 or -1 end
    end
    if order == 0 then return 1 end
    if order < 0 then return 2 end
  end
end
redis.call('SET', KEYS[1], ARGV[1] .. ',' .. ARGV[2] .. ',' .. ARGV[3], 'PX', ARGV[4])
return 0
"""


# KEYS: entry. ARGV: claim ttl ms. -> 0 claimed, 1 done before, 3 pending elsewhere
_CLAIM = """
if redis.call('SET', KEYS[1], 'pending', 'NX', 'PX', ARGV[1]) then return 0 end
if redis.call('GET', KEYS[1]) == 'pending' then return 3 end
return 1
"""

# KEYS: entry. -> 1 released
_RELEASE = """
if redis.call('GET', KEYS[1]) == 'pending' then return redis.call('DEL', KEYS[1]) end
return 0
"""


class SharedDedupe:
    def __init__(
        self,
        client: Redis,
        health: RedisHealth,
        *,
        namespace: str = "switchboard:",
        ttl_s: float = 86_400.0,
        claim_ttl_s: float = 15.0,
    ) -> None:
        self.client = client
        self.health = health
        self.prefix = f"{namespace}webhook:"
        self.ttl_ms = int(ttl_s * 1000)
        self.claim_ttl_ms = int(claim_ttl_s * 1000)
        self._latest = client.register_script(_LATEST)
        self._claim = client.register_script(_CLAIM)
        self._release = client.register_script(_RELEASE)
        #: events delivered without the cluster-wide check because Redis was unreachable
        self.unchecked = 0

    async def admit(self, event: WebhookEvent) -> Verdict:
        """The cluster-wide verdict for an event the local dedupe would deliver."""
        if not self.health.is_up:
            self.unchecked += 1
            return Verdict.DELIVER
        key, progress = WebhookDedupe.identity(event)
        name = self.prefix + key.hex()
        try:
            if progress is None:
                claimed = await self._claim(keys=[name], args=[self.claim_ttl_ms])
                if claimed == 3:
                    return Verdict.IN_FLIGHT
                return Verdict.DELIVER if claimed == 0 else Verdict.DUPLICATE
            items, length, ended = progress
            outcome = await self._latest(keys=[name], args=[items, length, int(ended), self.ttl_ms])
        except (RedisError, OSError) as exc:
            self.health.down(exc)
            self.unchecked += 1
            return Verdict.DELIVER
        if outcome == 1:
            return Verdict.DUPLICATE
        if outcome == 2:
            return Verdict.SUPERSEDED
        return Verdict.DELIVER

    async def confirm(self, event: WebhookEvent) -> bool:
        """``event`` is durable: its claim holds for the full TTL. False if Redis failed
        (the pending claim then expires and a retry may deliver it twice)."""
        key, progress = WebhookDedupe.identity(event)
        if progress is not None:
            return True
        try:
            await self.client.set(self.prefix + key.hex(), b"done", px=self.ttl_ms)
        except (RedisError, OSError) as exc:
            self.health.down(exc)
            return False
        return True

    async def release(self, event: WebhookEvent) -> None:
        """``event`` did not become durable: drop its pending claim so a retry gets it."""
        key, progress = WebhookDedupe.identity(event)
        if progress is not None:
            return
        try:
            await self._release(keys=[self.prefix + key.hex()])
        except (RedisError, OSError) as exc:
            self.health.down(exc)

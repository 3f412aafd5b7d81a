"""Webhook dedupe across nodes: a retry that the load balancer sends to another node is
still delivered once.

The per-process ``WebhookDedupe`` decides first (no round trip for the retries it has
seen itself); what it would deliver is then claimed cluster-wide in Redis under a
stable key of the event (``WebhookDedupe.identity``): ``SET NX`` with the same TTL for
once-only events, and a compare-and-set script for latest-wins ``transcript_updated``.
If Redis cannot be reached the event is delivered: at-least-once is the promise, and
consumers dedupe by event id. The policy per event kind is exactly the per-process one.
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


class SharedDedupe:
    def __init__(
        self,
        client: Redis,
        health: RedisHealth,
        *,
        namespace: str = "switchboard:",
        ttl_s: float = 86_400.0,
    ) -> None:
        self.client = client
        self.health = health
        self.prefix = f"{namespace}webhook:"
        self.ttl_ms = int(ttl_s * 1000)
        self._latest = client.register_script(_LATEST)
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
                fresh = await self.client.set(name, b"1", nx=True, px=self.ttl_ms)
                return Verdict.DELIVER if fresh else Verdict.DUPLICATE
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

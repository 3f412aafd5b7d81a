"""The cache's Prometheus collectors, registered in the node's registry by the app.

Created unregistered, so an agent built before the server (or shared by several test
apps) can be exported from any registry it is handed.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

_HIT_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
)
TIERS = ("exact", "semantic", "single_flight")


class CacheMetrics:
    def __init__(self) -> None:
        self.hits = Counter(
            "switchboard_cache_hits", "Turns answered from the cache.", ["tier"], registry=None
        )
        self.misses = Counter(
            "switchboard_cache_misses", "Cache lookups that found nothing.", ["tier"], registry=None
        )
        self.refusals = Counter(
            "switchboard_cache_refusals",
            "Semantic candidates refused by a guard.",
            ["guard"],
            registry=None,
        )
        self.bypassed = Counter(
            "switchboard_cache_bypassed",
            "Turns sent to the agent without a lookup.",
            ["reason"],
            registry=None,
        )
        self.stored = Counter("switchboard_cache_stored", "Replies stored.", registry=None)
        self.not_stored = Counter(
            "switchboard_cache_not_stored",
            "Finished replies that were not eligible for storing.",
            ["reason"],
            registry=None,
        )
        self.errors = Counter(
            "switchboard_cache_errors",
            "Backend failures and corrupt entries (each one a miss, never a failed turn).",
            ["kind"],
            registry=None,
        )
        self.hit_first_chunk = Histogram(
            "switchboard_cache_hit_first_chunk_seconds",
            "Turn start -> first cached chunk handed to the session, by tier.",
            ["tier"],
            buckets=_HIT_BUCKETS,
            registry=None,
        )
        self._hit = {t: self.hits.labels(t) for t in TIERS}
        self._hit_first_chunk = {t: self.hit_first_chunk.labels(t) for t in TIERS[:2]}
        self._miss = {t: self.misses.labels(t) for t in TIERS[:2]}
        self._registries: list[CollectorRegistry] = []

    def register(self, registry: CollectorRegistry) -> None:
        if any(r is registry for r in self._registries):
            return
        for collector in (
            self.hits,
            self.misses,
            self.refusals,
            self.bypassed,
            self.stored,
            self.not_stored,
            self.errors,
            self.hit_first_chunk,
        ):
            registry.register(collector)
        self._registries.append(registry)

    def hit(self, tier: str, first_chunk_s: float) -> None:
        self._hit[tier].inc()
        self._hit_first_chunk[tier].observe(first_chunk_s)

    def miss(self, tier: str) -> None:
        self._miss[tier].inc()

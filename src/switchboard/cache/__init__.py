"""The response cache: voice-safe exact and semantic tiers in memory or Redis (``docs/cache.md``).

``agent.CachedAgent`` wraps any agent; ``base.ResponseCache`` is the backend interface, with
``memory.MemoryResponseCache`` (profile ``single``) and ``redis.RedisResponseCache`` (the
shared-state profiles); ``cache.build.with_cache`` builds what the settings and agent
file ask for.
Nothing is imported here, so ``switchboard cache ...`` and the CLI start without numpy.
"""

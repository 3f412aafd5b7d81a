"""The response cache the settings ask for, built, and an agent wrapped in it.

``cache = "auto"`` follows the profile: the ``single`` node keeps its cache in memory, the
shared-state profiles in Redis, so every node answers from the same entries. The server
(``server.compose``) and ``switchboard cache`` build it the same way here.
"""

from __future__ import annotations

from pathlib import Path

from switchboard import extras
from switchboard.agents.base import Agent
from switchboard.cache.agent import CachedAgent
from switchboard.cache.base import ResponseCache
from switchboard.cache.keys import file_digest
from switchboard.cache.memory import MemoryResponseCache
from switchboard.cache.policy import CachePolicy, read_policy
from switchboard.config import Settings, uses_redis

REDIS_CACHE_NEEDS = "the Redis response cache needs Redis support"


class CacheConfigError(ValueError):
    """Settings that ask for a cache this deployment cannot have (Redis without a URL)."""


def cache_backend(settings: Settings) -> str:
    """``off``, ``memory`` or ``redis``: what ``settings.cache`` means for this profile."""
    if settings.cache != "auto":
        return settings.cache
    return "redis" if uses_redis(settings) else "memory"


def build_cache(settings: Settings) -> ResponseCache | None:
    name = cache_backend(settings)
    if name == "off":
        return None
    if name == "memory":
        return MemoryResponseCache()
    if not settings.redis_url:
        raise CacheConfigError(
            f"the response cache of profile {settings.profile!r} lives in Redis: set "
            "redis_url (or cache = 'memory' / 'off')"
        )
    extras.require("distributed", "redis", REDIS_CACHE_NEEDS)
    from switchboard.cache.redis import RedisResponseCache

    return RedisResponseCache.from_url(
        settings.redis_url, namespace=settings.redis_namespace, timeout_ms=settings.cache_timeout_ms
    )


def with_cache(agent: Agent, settings: Settings, agent_file: Path | None = None) -> Agent:
    """Wrap ``agent`` in the cache its file and the settings ask for; else return it."""
    path = agent_file or settings.agent_file
    policy = read_policy(path)
    if not policy.active:
        return agent
    cache = build_cache(settings)
    if cache is None:
        return agent
    return cached(agent, cache, policy, path, settings.cache_ttl_s)


def cached(
    agent: Agent, cache: ResponseCache, policy: CachePolicy, path: Path, ttl_s: float
) -> CachedAgent:
    # What the agent loaded besides the file (a prompt file, a model from the environment).
    extra = [str(getattr(agent, "model", ""))]
    prompt = getattr(agent, "system_prompt", None)
    extra.append(str(getattr(prompt, "source", prompt or "")))
    return CachedAgent(agent, cache, policy, digest=file_digest(path, extra), ttl_s=ttl_s)

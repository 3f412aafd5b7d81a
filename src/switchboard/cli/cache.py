"""``switchboard cache warm|stats|clear``: the shared cache, from outside the server.

These talk to the backend the settings choose. The ``single`` profile's cache lives in the
server's memory, where another process cannot reach it: there, list the lines under
``cache.warm`` in the agent file and the server warms itself at start-up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from switchboard.cache.base import ResponseCache
    from switchboard.config import Settings

cache_app = typer.Typer(
    name="cache",
    help="Pre-warm, inspect or clear the response cache.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

ConfigOption = Annotated[Path | None, typer.Option("--config", help="Settings file (TOML).")]
ProfileOption = Annotated[
    str | None, typer.Option(help="single, distributed or event-driven (default: single).")
]
RedisOption = Annotated[str | None, typer.Option(help="Redis URL of the shared cache.")]
BackendOption = Annotated[
    str | None, typer.Option("--backend", help="auto, memory or redis (default: auto).")
]


def _settings(
    config: Path | None,
    profile: str | None,
    redis_url: str | None,
    backend: str | None,
    agent_file: Path | None = None,
) -> Settings:
    from switchboard.cache.build import cache_backend
    from switchboard.config import load_settings

    if redis_url is not None and backend is None and profile is None:
        # A Redis URL on the command line names the cache to act on; without this the
        # default profile (single, an in-process cache) would ignore it.
        backend = "redis"
    try:
        settings = load_settings(
            config, profile=profile, redis_url=redis_url, cache=backend, agent_file=agent_file
        )
    except (ValueError, FileNotFoundError) as exc:
        typer.echo(f"cache: {exc}", err=True)
        raise typer.Exit(2) from None
    name = cache_backend(settings)
    if name != "redis":
        typer.echo(
            f"cache: the {name!r} cache lives inside the server process, out of reach of this "
            "command; use a Redis-backed profile (--profile distributed --redis-url URL), or "
            "list caller lines under cache.warm in the agent file",
            err=True,
        )
        raise typer.Exit(2)
    if not settings.redis_url:
        typer.echo("cache: no redis_url (--redis-url, SWITCHBOARD_REDIS_URL or --config)", err=True)
        raise typer.Exit(2)
    return settings


@cache_app.command()
def warm(
    agent_file: Annotated[Path, typer.Option("--agent-file", help="Agent file (YAML or TOML).")],
    lines: Annotated[Path, typer.Option("--lines", help="Caller lines, one per line.")],
    config: ConfigOption = None,
    profile: ProfileOption = None,
    redis_url: RedisOption = None,
    backend: BackendOption = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Lines asked at once.")] = 4,
) -> None:
    """Ask the agent each caller line and store the eligible replies."""
    from switchboard.agents.agent_file import AgentFileError
    from switchboard.agents.loader import load_agent
    from switchboard.cache.agent import CachedAgent
    from switchboard.cache.build import build_cache, cached
    from switchboard.cache.policy import read_policy
    from switchboard.cache.warm import read_lines
    from switchboard.cache.warm import warm as run_warm

    settings = _settings(config, profile, redis_url, backend, agent_file)
    try:
        asked = read_lines(lines)
        policy = read_policy(agent_file)
        agent = load_agent(agent_file)
    except (OSError, AgentFileError) as exc:
        typer.echo(f"cache warm: {exc}", err=True)
        raise typer.Exit(2) from None
    if not policy.active:
        typer.echo(f"cache warm: {agent_file} has its cache turned off", err=True)
        raise typer.Exit(2)
    cache = build_cache(settings)
    assert cache is not None

    async def go() -> None:
        wrapped: CachedAgent = cached(agent, cache, policy, agent_file, settings.cache_ttl_s)
        try:
            report = await run_warm(wrapped, asked, concurrency)
        finally:
            await wrapped.aclose()
        typer.echo(f"asked {report.asked}, stored {report.stored}, already cached {report.already}")
        for reason, count in sorted(report.skipped.items()):
            typer.echo(f"  not stored ({reason}): {count}")

    asyncio.run(go())


def _on_shared_cache(
    what: str,
    settings: Settings,
    act: Callable[[ResponseCache], Awaitable[int]],
) -> tuple[ResponseCache, int]:
    """Run ``act`` on the deployment's cache; an unreachable one is one line and exit 1."""
    from switchboard.cache.base import CacheUnavailable
    from switchboard.cache.build import build_cache

    cache = build_cache(settings)
    assert cache is not None

    async def go() -> int:
        try:
            return await act(cache)
        finally:
            await cache.close()

    try:
        return cache, asyncio.run(go())
    except CacheUnavailable as exc:
        typer.echo(f"cache {what}: {exc}", err=True)
        raise typer.Exit(1) from None


@cache_app.command()
def stats(
    config: ConfigOption = None,
    profile: ProfileOption = None,
    redis_url: RedisOption = None,
    backend: BackendOption = None,
) -> None:
    """How many replies the shared cache holds."""
    settings = _settings(config, profile, redis_url, backend)
    cache, count = _on_shared_cache("stats", settings, lambda c: c.count())
    typer.echo(f"backend {cache.name}, namespace {settings.redis_namespace!r}: {count} entries")


@cache_app.command()
def clear(
    config: ConfigOption = None,
    profile: ProfileOption = None,
    redis_url: RedisOption = None,
    backend: BackendOption = None,
) -> None:
    """Delete every cached reply and vector under the deployment's namespace."""
    settings = _settings(config, profile, redis_url, backend)
    _, gone = _on_shared_cache("clear", settings, lambda c: c.clear())
    typer.echo(f"deleted {gone} keys")

"""The composition root: from ``Settings`` to the parts of a profile.

The one place that reads ``settings.profile`` and decides what a node is made of; the
app, the node and the runner receive the parts and never ask which profile they run.

| part | ``single`` | ``distributed`` | ``event-driven`` |
|---|---|---|---|
| call store | memory | Redis (claims, fencing) | Redis |
| response cache (``cache = "auto"``, ``cache.build``) | memory | Redis | Redis |
| ``RedisParts``: directory, commands, releases, dedupe | none | Redis | Redis |
| events | in-process hooks | in-process hooks | outbox to the bus |

An outbox is built whenever a bus is configured (a distributed node may publish too);
the event-driven profile refuses to start without one. Nothing here connects: the parts
start with the app's lifespan (``SwitchboardApp``), and ``check_redis`` is the one
network probe, run by ``switchboard serve`` before it builds anything. The command
listener is the one Redis part made at start (``RedisParts.start``): it needs the node's
live sessions to route commands to.

The Redis, Kafka and embedding packages are extras (``switchboard.extras``): they are
imported here only when a setting asks for them, and ``check_extras`` names the missing
one before anything is built, so a single-profile install never loads them.
"""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from switchboard import extras
from switchboard.cache.agent import SEMANTIC_NEEDS
from switchboard.cache.build import REDIS_CACHE_NEEDS, cache_backend
from switchboard.cache.policy import read_policy
from switchboard.calls.options import SessionOptions
from switchboard.calls.publisher import CallEventPublisher
from switchboard.config import Settings, uses_redis
from switchboard.events.buses import open_bus, parse_bus_url
from switchboard.events.outbox import Outbox, OutboxOptions
from switchboard.state.base import CallStore
from switchboard.state.memory import MemoryCallStore

if TYPE_CHECKING:
    from switchboard.server.redis_parts import RedisParts


@dataclass(slots=True)
class Parts:
    """What a node is made of, for one profile."""

    profile: str
    node_id: str
    store: CallStore
    options: SessionOptions
    #: the Redis-backed parts of the shared-state profiles (``None`` for ``single``)
    redis: RedisParts | None = None
    #: the outbox and the publisher that feeds it (``None`` without a bus)
    outbox: Outbox | None = None
    publisher: CallEventPublisher | None = None


def compose(settings: Settings, store: CallStore | None = None) -> Parts:
    """The parts of ``settings.profile``. ``store`` replaces the profile's call store (tests
    count its operations). Raises ``ValueError`` with a line a person can act on."""
    if settings.profile == "event-driven" and not settings.bus_url:
        raise ValueError(
            "profile 'event-driven' needs an event bus: set --bus kafka://HOST:PORT or "
            "redis://HOST:PORT/DB (docs/event-bus.md)"
        )
    node_id = settings.node_id or default_node_id()
    redis = redis_parts(settings, node_id) if uses_redis(settings) else None
    if store is None:
        store = redis.store if redis is not None else MemoryCallStore(ttl_s=settings.state_ttl_s)
    parts = Parts(settings.profile, node_id, store, session_options(settings), redis)
    if settings.bus_url:
        parts.outbox, parts.publisher = event_publisher(settings, node_id)
    return parts


def check_extras(settings: Settings) -> None:
    """Raise ``extras.MissingExtra`` if ``settings`` (or their agent file's cache section)
    ask for a part whose packages are not installed; the message names the extra."""
    if uses_redis(settings):
        extra = "event-driven" if settings.profile == "event-driven" else "distributed"
        extras.require(extra, "redis", f"the {settings.profile} profile needs Redis support")
    if settings.bus_url:
        scheme = parse_bus_url(settings.bus_url).scheme
        if scheme == "kafka":
            extras.require("event-driven", "aiokafka", "a Kafka event bus needs the Kafka client")
        elif scheme == "redis":
            extras.require("distributed", "redis", "a Redis Streams event bus needs Redis support")
    if cache_backend(settings) == "redis":
        extras.require("distributed", "redis", REDIS_CACHE_NEEDS)
    check_agent_extras(settings.agent_file)


def check_agent_extras(agent_file: Path) -> None:
    """Raise ``extras.MissingExtra`` if the agent file's cache asks for the semantic tier
    and the embedding model's packages are not installed."""
    policy = read_policy(agent_file)
    if policy.active and policy.semantic:
        extras.require("semantic-cache", "onnxruntime", SEMANTIC_NEEDS)


def default_node_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def session_options(settings: Settings) -> SessionOptions:
    return SessionOptions(
        auto_reconnect=settings.auto_reconnect,
        call_details=settings.call_details,
        transcript_with_tool_calls=settings.transcript_with_tool_calls,
        first_chunk_timeout_s=settings.first_chunk_timeout_ms / 1000,
        turn_timeout_s=settings.turn_timeout_s,
        call_details_timeout_s=settings.call_details_timeout_ms / 1000,
        fallback_text=settings.fallback_text,
        max_frame_bytes=settings.max_frame_bytes,
        state_wait_s=settings.state_wait_ms / 1000,
        lost_wait_s=2.5 * settings.heartbeat_ms / 1000,
    )


def redis_parts(settings: Settings, node_id: str) -> RedisParts:
    """One client and one ``RedisHealth`` for the store, the dedupe and the releases; a
    small client of its own for the heartbeat (see ``RedisParts``)."""
    from switchboard.connections import RedisHealth, redis_client
    from switchboard.control.directory import Directory
    from switchboard.server.cluster_dedupe import SharedDedupe
    from switchboard.server.redis_parts import RedisParts
    from switchboard.server.releases import ReleaseQueue
    from switchboard.state.redis import RedisCallStore

    if not settings.redis_url:
        raise ValueError(
            f"profile {settings.profile!r} needs Redis: set --redis-url or "
            "SWITCHBOARD_REDIS_URL (e.g. redis://127.0.0.1:6379/0)"
        )
    ns = settings.redis_namespace
    client = redis_client(settings.redis_url, timeout_ms=settings.redis_timeout_ms)
    health = RedisHealth(client)
    store = RedisCallStore(client, namespace=ns, ttl_s=settings.state_ttl_s, health=health)
    directory_client = redis_client(
        settings.redis_url, timeout_ms=settings.redis_timeout_ms, max_connections=2
    )
    return RedisParts(
        settings,
        node_id,
        client=client,
        health=health,
        store=store,
        directory_client=directory_client,
        directory=Directory(directory_client, ns),
        dedupe=SharedDedupe(client, health, namespace=ns),
        releases=ReleaseQueue(store.release, health),
    )


def event_publisher(settings: Settings, node_id: str) -> tuple[Outbox, CallEventPublisher]:
    """The outbox on the configured bus (spilling to ``outbox_dir``), and the publisher
    that turns a session's call events into events on it."""
    assert settings.bus_url
    bus = open_bus(
        settings.bus_url, namespace=settings.redis_namespace, max_len=settings.bus_max_len
    )
    spill_dir = settings.outbox_dir or (
        Path(tempfile.gettempdir()) / "switchboard-outbox" / (settings.node_id or "default")
    )
    options = OutboxOptions(
        capacity=settings.outbox_capacity,
        spill_dir=spill_dir,
        fsync=settings.outbox_fsync,
        spill_max_bytes=settings.outbox_spill_max_bytes,
        max_event_bytes=settings.outbox_max_event_bytes,
        stall_s=settings.outbox_stall_s,
    )
    outbox = Outbox(bus, options)
    return outbox, CallEventPublisher(outbox, node_id)


def check_redis(settings: Settings) -> str | None:
    """Before a shared-state node starts: why its Redis cannot serve it, or ``None``. A node
    whose Redis does not answer would serve calls no other node could resume."""
    if not uses_redis(settings):
        return None
    if not settings.redis_url:
        return (
            f"profile {settings.profile!r} needs Redis: pass --redis-url or set "
            "SWITCHBOARD_REDIS_URL (e.g. redis://127.0.0.1:6379/0)"
        )
    from switchboard.connections import check_reachable, describe

    problem = asyncio.run(check_reachable(settings.redis_url))
    if problem is not None:
        return f"Redis at {describe(settings.redis_url)} is unreachable ({problem})"
    return None

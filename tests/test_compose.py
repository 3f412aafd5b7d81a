"""The composition root: what each profile is made of, decided from settings alone."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import switchboard
from switchboard.cache.build import cache_backend
from switchboard.config import Settings, uses_redis
from switchboard.server.compose import compose
from switchboard.state.memory import MemoryCallStore
from switchboard.state.redis import RedisCallStore

REDIS = "redis://127.0.0.1:1/0"  # never connected: composing opens no connection


def test_single_is_process_memory_and_in_process_hooks() -> None:
    parts = compose(Settings(profile="single", node_id="n1"))
    assert isinstance(parts.store, MemoryCallStore)
    assert parts.redis is None
    assert parts.outbox is None
    assert parts.publisher is None
    assert parts.node_id == "n1"
    assert cache_backend(Settings(profile="single")) == "memory"


async def test_distributed_keeps_state_directory_and_dedupe_in_one_redis() -> None:
    parts = compose(Settings(profile="distributed", redis_url=REDIS))
    assert isinstance(parts.store, RedisCallStore)
    assert parts.redis is not None
    assert parts.redis.store is parts.store
    assert parts.outbox is None
    assert cache_backend(Settings(profile="distributed", redis_url=REDIS)) == "redis"
    await parts.redis.client.aclose()
    await parts.redis.directory_client.aclose()


async def test_event_driven_adds_an_outbox_on_the_bus(tmp_path: Path) -> None:
    settings = Settings(
        profile="event-driven", redis_url=REDIS, bus_url=REDIS, outbox_dir=tmp_path / "outbox"
    )
    parts = compose(settings)
    assert parts.redis is not None
    assert parts.outbox is not None
    assert parts.publisher is not None
    assert uses_redis(settings)
    await parts.outbox.bus.close()
    await parts.redis.client.aclose()
    await parts.redis.directory_client.aclose()


def test_a_store_given_replaces_the_profiles_own() -> None:
    store = MemoryCallStore()
    assert compose(Settings(profile="single"), store).store is store


def test_shared_state_profiles_need_redis() -> None:
    with pytest.raises(ValueError, match="needs Redis"):
        compose(Settings(profile="distributed"))


def test_event_driven_needs_a_bus() -> None:
    with pytest.raises(ValueError, match="needs an event bus"):
        compose(Settings(profile="event-driven", redis_url=REDIS))


def test_an_explicit_cache_backend_wins_over_the_profile() -> None:
    assert cache_backend(Settings(profile="distributed", cache="off")) == "off"
    assert cache_backend(Settings(profile="single", cache="redis")) == "redis"


def test_only_the_composition_root_reads_the_profile() -> None:
    """The node's packages receive parts; none of them branches on the profile. The
    composition root has one piece in ``cache/``: the cache the settings ask for, built the
    same way by the server and by ``switchboard cache``."""
    root = Path(switchboard.__file__).parent
    readers = [
        str(path.relative_to(root))
        for package in ("server", "calls", "cache", "state", "control", "events")
        for path in sorted((root / package).rglob("*.py"))
        if re.search(r"settings\.profile\b", path.read_text())
    ]
    assert sorted(readers) == ["cache/build.py", "server/compose.py"]


async def test_a_fresh_node_writes_its_store_marker_before_its_first_call(
    redis_server_url: str, redis_namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Without the marker a first claim reads as "the store lost this call" and waits for
    a hand-back before greeting (seconds of silence on a freshly started node)."""
    from tests.fixtures.agents import EchoAgent
    from tests.fixtures.distributed import begin
    from tests.fixtures.server import retell, running_server

    async with (
        running_server(
            EchoAgent(),
            profile="distributed",
            redis_url=redis_server_url,
            redis_namespace=redis_namespace,
            node_id="fresh",
            call_details=False,
        ) as srv,
        retell(srv.ws_url, "first-call") as peer,
    ):
        shared = srv.app.shared
        assert shared is not None
        marker = shared.store.marker_key("fresh")
        assert await shared.client.exists(marker) == 1
        assert await begin(peer) == "Hello from the clinic."
    assert "lost its data" not in caplog.text  # claimed as a new call

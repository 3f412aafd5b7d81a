"""The ``CallStore`` contract. Every backend must pass this suite; add a backend to
``BACKENDS``. The Redis backend runs against a real server (``redis_server_url``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from switchboard.connections import redis_client
from switchboard.state.base import (
    CallState,
    CallStore,
    FencedOut,
    LastReply,
    StaleWrite,
    StateLost,
)
from switchboard.state.memory import MemoryCallStore
from switchboard.state.redis import RedisCallStore

pytestmark = pytest.mark.integration


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Backend:
    """A store under test and the means to let its TTL run out."""

    def __init__(self, make: Callable[[float], CallStore], expire: Callable[[float], Any]) -> None:
        self.make = make
        self._expire = expire

    async def let_time_pass(self, seconds: float) -> None:
        result = self._expire(seconds)
        if result is not None:
            await result


def memory_backend(clock: FakeClock, _url: str, _ns: str) -> Backend:
    def advance(seconds: float) -> None:
        clock.now += seconds

    return Backend(lambda ttl: MemoryCallStore(ttl_s=ttl, clock=clock), advance)


def redis_backend(_clock: FakeClock, url: str, namespace: str) -> Backend:
    # Redis keeps its own time: let it pass for real (TTLs in these tests are short).
    async def wait(seconds: float) -> None:
        await asyncio.sleep(seconds)

    return Backend(
        lambda ttl: RedisCallStore(redis_client(url), namespace=namespace, ttl_s=ttl), wait
    )


BACKENDS: dict[str, Callable[[FakeClock, str, str], Backend]] = {
    "memory": memory_backend,
    "redis": redis_backend,
}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=sorted(BACKENDS))
def backend(
    request: pytest.FixtureRequest, clock: FakeClock, redis_server_url: str, redis_namespace: str
) -> Backend:
    return BACKENDS[request.param](clock, redis_server_url, redis_namespace)


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[CallStore]:
    made = backend.make(3600)
    yield made
    await made.close()


async def test_claim_creates_a_fresh_state(store: CallStore) -> None:
    state = await store.claim("c1", "node-a")
    assert state.call_id == "c1"
    assert state.epoch == 1
    assert not state.greeted
    assert state.state == {}


async def test_saved_state_survives_a_new_claim_with_a_higher_epoch(store: CallStore) -> None:
    state = await store.claim("c1", "node-a")
    state.greeted = True
    state.state["slots"] = {"name": "Ada"}
    await store.save(state)
    again = await store.claim("c1", "node-b")
    assert again.epoch == 2
    assert again.greeted
    assert again.state == {"slots": {"name": "Ada"}}


async def test_an_older_claim_is_fenced_out(store: CallStore) -> None:
    old = await store.claim("c1", "node-a")
    new = await store.claim("c1", "node-b")
    await store.save(new)
    old.state["late"] = True
    with pytest.raises(FencedOut):
        await store.save(old)
    stored = await store.load("c1")
    assert stored is not None
    assert "late" not in stored.state


async def test_a_save_over_an_unseen_version_is_refused(store: CallStore) -> None:
    state = await store.claim("c1", "node-a")
    copy = CallState(call_id="c1", epoch=state.epoch, version=state.version, token=state.token)
    await store.save(state)
    with pytest.raises(StaleWrite):
        await store.save(copy)


async def test_saves_bump_the_version(store: CallStore) -> None:
    state = await store.claim("c1", "node-a")
    first = state.version
    await store.save(state)
    await store.save(state)
    assert state.version == first + 2


async def test_mutating_after_save_does_not_change_what_was_saved(store: CallStore) -> None:
    state = await store.claim("c1", "node-a")
    state.state["n"] = 1
    await store.save(state)
    state.state["n"] = 2
    stored = await store.load("c1")
    assert stored is not None
    assert stored.state == {"n": 1}


async def test_state_expires_after_the_ttl(backend: Backend) -> None:
    store = backend.make(1.0)
    try:
        state = await store.claim("c1", "node-a")
        state.greeted = True
        await store.save(state)
        assert await store.load("c1") is not None
        await backend.let_time_pass(1.2)
        assert await store.load("c1") is None
        assert (await store.claim("c1", "node-a")).greeted is False
    finally:
        await store.close()


async def test_a_save_refreshes_the_ttl(backend: Backend) -> None:
    store = backend.make(2.0)
    try:
        state = await store.claim("c1", "node-a")
        await backend.let_time_pass(1.2)
        await store.save(state)
        await backend.let_time_pass(1.2)
        assert await store.load("c1") is not None
    finally:
        await store.close()


async def test_release_keeps_the_state_but_not_over_a_newer_claim(store: CallStore) -> None:
    old = await store.claim("c1", "node-a")
    new = await store.claim("c1", "node-b")
    await store.release("c1", old.token)
    assert await store.latest_claim("c1") == new.token  # the newer claim still holds the call
    await store.save(new)
    await store.release("c1", new.token)
    assert await store.load("c1") is not None
    assert await store.latest_claim("c1") == new.token  # released, still the latest claim


async def test_the_state_round_trips_every_field(store: CallStore) -> None:
    state = await store.claim("c1", "node-a")
    state.greeted = True
    state.turns = 7
    state.last_response_id = 12
    state.last_reply = LastReply(response_id=12, content="Booked.", transfer_number="+1555")
    state.call = {"call_id": "c1", "retell_llm_dynamic_variables": {"name": "Ada"}}
    state.state = {"slots": {"day": "Tuesday", "party": 4}, "asked": [1, 2.5, None, "x"]}
    await store.save(state)
    again = await store.claim("c1", "node-b")
    assert (again.greeted, again.turns, again.last_response_id) == (True, 7, 12)
    assert again.call == state.call
    assert again.last_reply == state.last_reply
    assert again.state == state.state
    assert again.version == state.version


async def test_delete_forgets_the_call(store: CallStore) -> None:
    await store.claim("c1", "node-a")
    await store.delete("c1")
    assert await store.load("c1") is None


async def test_every_claim_mints_its_own_token(store: CallStore) -> None:
    first = await store.claim("c1", "node-a")
    second = await store.claim("c1", "node-a")
    assert first.token
    assert second.token != first.token
    assert await store.latest_claim("c1") == second.token


async def test_a_save_never_recreates_a_lost_call(store: CallStore) -> None:
    state = await store.claim("c1", "node-a")
    state.greeted = True
    await store.delete("c1")  # Redis restarted empty, an eviction, a flush
    with pytest.raises(StateLost):
        await store.save(state)
    assert await store.load("c1") is None


async def test_the_owner_writes_a_lost_call_back_explicitly(store: CallStore) -> None:
    state = await store.claim("c1", "node-a")
    state.greeted = True
    await store.delete("c1")
    assert await store.reclaim(state, "node-a")
    assert await store.latest_claim("c1") == state.token
    stored = await store.load("c1")
    assert stored is not None
    assert stored.greeted
    await store.save(state)  # the socket keeps writing under its own token


async def test_a_lost_call_claimed_by_another_socket_is_not_taken_back(store: CallStore) -> None:
    """The split-brain of a lost key: the epoch restarts at 1 on both sides, but the
    tokens differ, so exactly one socket owns the call."""
    old = await store.claim("c1", "node-a")
    await store.delete("c1")
    new = await store.claim("c1", "node-b")
    assert new.epoch == 1
    assert not await store.reclaim(old, "node-a")
    with pytest.raises(FencedOut):
        await store.save(old)
    await store.save(new)
    assert await store.latest_claim("c1") == new.token

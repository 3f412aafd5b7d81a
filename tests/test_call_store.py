"""The ``CallStore`` contract. Every backend must pass this suite; add a backend to
``BACKENDS`` (the Redis one will run against a real server)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from switchboard.state.base import CallState, CallStore, FencedOut, StaleWrite
from switchboard.state.memory import MemoryCallStore


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


BACKENDS: dict[str, Callable[[FakeClock], CallStore]] = {
    "memory": lambda clock: MemoryCallStore(ttl_s=3600, clock=clock),
}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=sorted(BACKENDS))
async def store(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[CallStore]:
    backend = BACKENDS[request.param](clock)
    yield backend
    await backend.close()


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
    copy = CallState(call_id="c1", epoch=state.epoch, version=state.version)
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


async def test_state_expires_after_the_ttl(store: CallStore, clock: FakeClock) -> None:
    state = await store.claim("c1", "node-a")
    state.greeted = True
    await store.save(state)
    clock.now += 3599
    assert await store.load("c1") is not None
    clock.now += 3601
    assert await store.load("c1") is None
    assert (await store.claim("c1", "node-a")).greeted is False


async def test_delete_forgets_the_call(store: CallStore) -> None:
    await store.claim("c1", "node-a")
    await store.delete("c1")
    assert await store.load("c1") is None

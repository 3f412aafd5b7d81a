"""``StateKeeper.persist_now``: a completed turn saved without a task where the store
saves in process memory, with the same checks as ``persist``; anything it cannot settle
at once is left to ``persist``."""

from __future__ import annotations

import asyncio
from typing import Any

from switchboard.calls.keeper import StateKeeper
from switchboard.log import get_logger
from switchboard.state.base import CallState, InlineSaves
from switchboard.state.memory import MemoryCallStore


class PlainStore:
    """The memory store behind the plain ``CallStore`` methods only (like Redis's)."""

    def __init__(self, store: MemoryCallStore) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        if name == "save_now":
            raise AttributeError(name)
        return getattr(self._store, name)


def _keeper(store: Any, call_id: str, fenced: list[str]) -> StateKeeper:
    return StateKeeper(call_id, store, "node-a", get_logger("test"), fenced.append)


async def test_a_memory_save_is_made_at_once_and_checked_as_any_save() -> None:
    store = MemoryCallStore()
    assert isinstance(store, InlineSaves)
    fenced: list[str] = []
    keeper = _keeper(store, "inline", fenced)
    assert keeper.persist_now() is None  # not claimed yet: only persist knows what to do
    assert await keeper.claim()
    keeper.state.turns = 3
    assert keeper.persist_now() is True
    assert keeper.unfinished() == []  # no task was made
    stored = await store.load("inline")
    assert stored is not None
    assert stored.turns == 3
    assert stored.version == keeper.state.version == 1
    # Another socket claims the call: the next save is refused and this one fenced.
    await store.claim("inline", "node-b")
    assert keeper.persist_now() is False
    assert keeper.fenced
    assert fenced == ["another claim refused this socket's save"]
    assert keeper.persist_now() is None  # fenced: never writes again


async def test_what_it_cannot_settle_at_once_is_left_to_persist() -> None:
    store = MemoryCallStore()
    keeper = _keeper(store, "lost", [])
    assert await keeper.claim()
    # The store lost the call: persist_now changes nothing; persist writes it back.
    await store.delete("lost")
    assert keeper.persist_now() is None
    assert await store.load("lost") is None
    assert await keeper.persist(1.0) is True
    assert await store.load("lost") is not None
    # A version moved under this socket's own token (a save whose reply was lost).
    stored = await store.load("lost")
    assert stored is not None
    store.save_now(stored)
    assert keeper.persist_now() is None
    assert await keeper.persist(1.0) is True
    # A save under way (the keeper's lock held) is never overtaken.
    async with keeper._lock:
        assert keeper.persist_now() is None


async def test_a_store_without_inline_saves_always_goes_through_persist() -> None:
    memory = MemoryCallStore()
    store = PlainStore(memory)
    assert not isinstance(store, InlineSaves)
    keeper = _keeper(store, "plain", [])
    assert await keeper.claim()
    assert keeper.persist_now() is None
    assert await keeper.persist(1.0) is True


async def test_a_held_save_keeps_later_turns_off_the_inline_path() -> None:
    """While a save waits for its store (a reconcile is pending) later ones wait behind it."""
    store = MemoryCallStore()
    keeper = _keeper(store, "held", [])
    assert await keeper.claim()
    never: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    keeper.pending_write = asyncio.ensure_future(never)
    assert keeper.persist_now() is None
    keeper.pending_write.cancel()
    await asyncio.wait({keeper.pending_write})
    assert keeper.persist_now() is True
    assert isinstance(await store.load("held"), CallState)

"""Ownership under any interleaving: claims, saves, write-backs and releases by several
sockets of one call, with the call's key lost at any step (Redis restarted empty, an
eviction, a flush). A Hypothesis state machine runs them against a model in which the
socket that claimed (or wrote back a lost call) last is the only one whose writes land.
Both backends; the Redis one against a real server."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from switchboard.connections import redis_client
from switchboard.state.base import CallState, CallStore, FencedOut, StateLost
from switchboard.state.memory import MemoryCallStore
from switchboard.state.redis import RedisCallStore

CALL = "fenced-call"
SOCKETS = 4


def machine_for(make_store: Any) -> type[RuleBasedStateMachine]:
    class Fencing(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.loop = asyncio.new_event_loop()
            self.store: CallStore = make_store()
            self.sockets: dict[int, CallState] = {}
            #: the model: which socket's token the store holds, and whether the key exists
            self.holder: int | None = None
            self.present = False
            #: what the store's data must be: the last write that landed
            self.data: dict[str, Any] = {}
            self.writes = 0

        def run(self, coro: Any) -> Any:
            return self.loop.run_until_complete(coro)

        @initialize()
        def first_claim(self) -> None:
            self.sockets[0] = self.run(self.store.claim(CALL, "node-0"))
            self.holder, self.present, self.data = 0, True, {}

        @rule(socket=st.integers(0, SOCKETS - 1))
        def claim(self, socket: int) -> None:
            if not self.present:
                self.data = {}
            self.sockets[socket] = self.run(self.store.claim(CALL, f"node-{socket}"))
            assert self.sockets[socket].state == self.data  # a claim reads what landed
            self.holder, self.present = socket, True

        @rule(socket=st.integers(0, SOCKETS - 1))
        def save(self, socket: int) -> None:
            state = self.sockets.get(socket)
            if state is None:
                return
            self.writes += 1
            state.state = {"writer": socket, "write": self.writes}
            try:
                self.run(self.store.save(state))
                landed = True
            except (FencedOut, StateLost):
                landed = False
            assert landed == (self.present and self.holder == socket)
            if landed:
                self.data = dict(state.state)

        @rule(socket=st.integers(0, SOCKETS - 1))
        def reclaim(self, socket: int) -> None:
            state = self.sockets.get(socket)
            if state is None:
                return
            held = self.run(self.store.reclaim(state, f"node-{socket}"))
            assert held == (not self.present or self.holder == socket)
            if held:
                self.holder, self.present, self.data = socket, True, dict(state.state)

        @rule(socket=st.integers(0, SOCKETS - 1))
        def release(self, socket: int) -> None:
            state = self.sockets.get(socket)
            if state is not None:
                self.run(self.store.release(CALL, state.token))

        @rule()
        def lose_the_key(self) -> None:
            self.run(self.store.delete(CALL))
            self.present = False

        @invariant()
        def the_store_holds_only_the_models_owner(self) -> None:
            stored = self.run(self.store.load(CALL))
            if not self.present:
                assert stored is None
                return
            assert stored is not None
            assert self.holder is not None
            assert stored.token == self.sockets[self.holder].token
            assert stored.state == self.data

        def teardown(self) -> None:
            self.run(self.store.delete(CALL))
            self.run(self.store.close())
            client = getattr(self.store, "client", None)
            if client is not None:
                self.run(client.aclose())
            self.loop.close()

    return Fencing


def test_the_memory_store_keeps_one_owner_whatever_the_interleaving() -> None:
    machine = machine_for(MemoryCallStore)
    machine.TestCase.settings = settings(stateful_step_count=30, max_examples=60)
    machine.TestCase().runTest()


@pytest.mark.usefixtures("redis_server_url")
def test_the_redis_store_keeps_one_owner_whatever_the_interleaving(redis_server_url: str) -> None:
    def make() -> RedisCallStore:
        namespace = f"sbfence:{uuid.uuid4().hex[:8]}:"
        return RedisCallStore(redis_client(redis_server_url), namespace=namespace)

    machine = machine_for(make)
    machine.TestCase.settings = settings(stateful_step_count=30, max_examples=40)
    machine.TestCase().runTest()

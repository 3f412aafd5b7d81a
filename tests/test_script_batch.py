"""The store's script calls of many calls share one pipeline (``state.script_batch``), yet
each is judged on its own: a fenced save in a batch does not fail the others, each save's
version moves on, claims and releases ride along, and Redis forgetting its scripts
(restarted empty) is survived. Real valkey-server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from switchboard.connections import redis_client
from switchboard.state.base import FencedOut, StateLost
from switchboard.state.redis import RedisCallStore
from switchboard.state.script_batch import _evalsha


@pytest.fixture
async def store(redis_server_url: str, redis_namespace: str) -> AsyncIterator[RedisCallStore]:
    made = RedisCallStore(redis_client(redis_server_url), namespace=redis_namespace)
    yield made
    await made.close()
    await made.client.aclose()


async def test_saves_made_together_go_out_as_one_batch(store: RedisCallStore) -> None:
    states = [await store.claim(f"call-{i}", "node-a") for i in range(20)]
    for i, state in enumerate(states):
        state.turns = i + 1
    batches = store._batch.batches
    await asyncio.gather(*(store.save(state) for state in states))
    assert store._batch.batches == batches + 1
    for i, state in enumerate(states):
        assert state.version == 1
        loaded = await store.load(f"call-{i}")
        assert loaded is not None
        assert loaded.turns == i + 1


async def test_a_fenced_save_in_a_batch_leaves_the_others_saved(store: RedisCallStore) -> None:
    old = await store.claim("taken", "node-a")
    await store.claim("taken", "node-b")  # a newer socket owns it now
    mine = [await store.claim(f"kept-{i}", "node-a") for i in range(3)]
    lost = await store.claim("lost", "node-a")
    await store.delete("lost")
    results = await asyncio.gather(
        store.save(old), store.save(lost), *(store.save(s) for s in mine), return_exceptions=True
    )
    assert isinstance(results[0], FencedOut)
    assert isinstance(results[1], StateLost)
    assert results[2:] == [None, None, None]
    assert [s.version for s in mine] == [1, 1, 1]


async def test_saves_go_on_after_redis_forgot_its_scripts(store: RedisCallStore) -> None:
    state = await store.claim("scripted", "node-a")
    await store.save(state)
    await store.client.script_flush()
    state.turns = 7
    await store.save(state)
    loaded = await store.load("scripted")
    assert loaded is not None
    assert loaded.turns == 7
    assert loaded.version == 2


async def test_a_call_s_consecutive_saves_land_in_order(store: RedisCallStore) -> None:
    state = await store.claim("ordered", "node-a")
    for turn in range(1, 6):
        state.turns = turn
        await store.save(state)
    loaded = await store.load("ordered")
    assert loaded is not None
    assert (loaded.turns, loaded.version) == (5, 5)


def test_the_batch_packs_a_save_as_the_client_would() -> None:
    args = (1, "sb:call:x", "tok\u00e9n", 12, b'{"call_id":"x"}', 3600000)
    connection = redis_client("redis://127.0.0.1:1").connection_pool.make_connection()
    expected = b"".join(connection.pack_command("EVALSHA", "ab" * 20, *args))
    assert _evalsha("ab" * 20, args) == expected


async def test_claims_saves_and_releases_of_many_calls_share_batches(
    store: RedisCallStore,
) -> None:
    batches = store._batch.batches
    states = await asyncio.gather(*(store.claim(f"burst-{i}", "node-a") for i in range(10)))
    await asyncio.gather(*(store.save(state) for state in states))
    await asyncio.gather(*(store.release(s.call_id, s.token) for s in states))
    assert store._batch.batches == batches + 3
    for state in states:
        assert await store.owner(state.call_id) is None
        loaded = await store.load(state.call_id)
        assert loaded is not None
        assert loaded.version == 1


async def test_the_batch_socket_opens_before_the_first_call_and_is_the_only_one(
    store: RedisCallStore,
) -> None:
    clients = len(await store.client.client_list())
    await store.connect()
    assert len(await store.client.client_list()) == clients + 1
    await store.connect()  # already open: nothing more
    state = await store.claim("early", "node-a")
    await store.save(state)
    assert len(await store.client.client_list()) == clients + 1
    assert store._batch.calls == 2


async def test_a_call_made_while_the_batch_socket_connects_waits_for_it(
    store: RedisCallStore,
) -> None:
    connecting = asyncio.create_task(store.connect())
    await asyncio.sleep(0)  # the connect is under way (it awaits the socket)
    assert store._batch._busy
    state = await store.claim("waiting", "node-a")
    await connecting
    await store.save(state)
    loaded = await store.load("waiting")
    assert loaded is not None
    assert loaded.version == 1
    assert store._batch.batches == 2


async def test_a_release_rides_on_the_next_batch(store: RedisCallStore) -> None:
    ended = await store.claim("ended", "node-a")
    going = await store.claim("going", "node-a")
    batches = store._batch.batches
    release = asyncio.create_task(store.release("ended", ended.token))
    await asyncio.sleep(0)  # the release is queued, and waits for a batch to ride on
    assert store._batch.batches == batches
    await store.save(going)
    await release
    assert store._batch.batches == batches + 1
    assert await store.owner("ended") is None


async def test_a_release_with_nothing_to_ride_on_goes_out_on_its_own(
    store: RedisCallStore,
) -> None:
    ended = await store.claim("alone", "node-a")
    await store.release("alone", ended.token)
    assert await store.owner("alone") is None
    assert not await store.client.zscore(store.live_key, "alone")

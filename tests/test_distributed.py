"""The distributed profile with real nodes and a real Redis: any node resumes any call.

Two servers share one valkey-server (each test its own key namespace), so a reconnect
that lands on the other node is exactly what a load balancer would do after a node died.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import msgspec
import pytest

from switchboard.agents.loader import load_agent
from switchboard.config import builtin_example
from switchboard.connections import redis_client
from switchboard.control.client import CallControl, CommandFailed
from switchboard.protocol.signature import sign
from switchboard.state.redis import RedisCallStore
from tests.fixtures.agents import EchoAgent
from tests.fixtures.conditions import eventually, eventually_async
from tests.fixtures.distributed import Caller, begin, node
from tests.fixtures.server import RunningServer, retell, running_server, spoken

pytestmark = pytest.mark.integration


async def saved_turns(
    store: RedisCallStore, call_id: str, turns: int, timeout: float = 10.0
) -> None:
    """Wait for the save of a call's ``turns``-th turn: it follows ``content_complete``, off
    the response path, so a test that reads right after the reply would race it."""

    async def saved() -> bool:
        stored = await store.load(call_id)
        return stored is not None and stored.turns == turns

    await eventually_async(saved, timeout)


#: How long the Redis outage test keeps the link dead.
OUTAGE_S = 10.0


@pytest.fixture
def store(redis_server_url: str, redis_namespace: str) -> RedisCallStore:
    return RedisCallStore(redis_client(redis_server_url), namespace=redis_namespace)


async def test_a_booking_started_on_one_node_continues_on_another(
    redis_server_url: str, redis_namespace: str, store: RedisCallStore
) -> None:
    agent = load_agent(builtin_example("receptionist.yaml"))
    caller = Caller()
    async with (
        node(agent, redis_server_url, redis_namespace, "a") as a,
        node(agent, redis_server_url, redis_namespace, "b") as b,
    ):
        async with retell(a.ws_url, "call-1") as peer:
            assert "Maple Street" in await begin(peer)
            assert "full name" in await caller.say(peer, "I'd like to book an appointment.")
            assert "day and time" in await caller.say(peer, "It's Priya Shah.")

            await saved_turns(store, "call-1", 2)
        # The socket is gone (as after a node death); Retell reconnects, here to node b.
        stored = await store.load("call-1")
        assert stored is not None
        assert stored.turns == 2
        assert stored.last_response_id == 2
        async with retell(b.ws_url, "call-1") as peer:
            assert await begin(peer) == ""  # never a second greeting
            reply = await caller.say(peer, "Next Tuesday at 3 pm would be good.")
            assert "reason for the visit" in reply
            reply = await caller.say(peer, "Just a routine checkup.")
            assert "Priya Shah" in reply
            assert "routine checkup" in reply

            await saved_turns(store, "call-1", 4)
        resumed = await store.load("call-1")
        assert resumed is not None
        assert resumed.epoch == 2
        assert resumed.last_response_id == 4
    await store.client.aclose()


async def test_an_older_owner_is_fenced_and_drops_its_socket(
    redis_server_url: str, redis_namespace: str, store: RedisCallStore
) -> None:
    agent = EchoAgent()
    async with (
        node(agent, redis_server_url, redis_namespace, "a") as a,
        node(agent, redis_server_url, redis_namespace, "b") as b,
        retell(a.ws_url, "call-2") as old,
    ):
        await begin(old)
        await old.request(1, "first")
        await old.complete(1)
        old_session = a.app.node.sessions["call-2"]

        await saved_turns(store, "call-2", 1)
        # Retell lost sight of node a (a partition) and reconnected the call to node b.
        async with retell(b.ws_url, "call-2") as new:
            assert await begin(new) == ""
            closed = await old.closed()
            assert closed.rcvd is None  # dropped without a close frame: not an ended call
            assert old_session.fenced
            # The fenced session can no longer write, even if it tried.
            assert not await old_session._keeper.persist(0.0)
            await new.request(2, "second")
            assert "turn 2" in spoken(await new.complete(2), 2)

            await saved_turns(store, "call-2", 2)
        stored = await store.load("call-2")
        assert stored is not None
        assert stored.epoch == 2
        assert stored.state == {"count": 2}
    await store.client.aclose()


async def test_commands_reach_the_live_call_through_its_owner(
    redis_server_url: str, redis_namespace: str
) -> None:
    control = CallControl.from_url(redis_server_url, namespace=redis_namespace)
    async with (
        node(EchoAgent(), redis_server_url, redis_namespace, "a") as a,
        node(EchoAgent(), redis_server_url, redis_namespace, "b"),
        retell(a.ws_url, "call-3") as peer,
    ):
        await begin(peer)
        listed = await control.calls()
        assert [(c.call_id, c.owner, c.owner_alive) for c in listed] == [("call-3", "a", True)]
        reply = await control.say("call-3", "A supervisor is joining.")
        assert reply.node == "a"
        frame = await peer.recv()
        assert frame["response_type"] == "agent_interrupt"
        assert frame["content"] == "A supervisor is joining."
        assert frame["content_complete"] is True
        await control.transfer("call-3", "+14155550100", "Transferring you now.")
        frame = await peer.recv()
        assert (frame["transfer_number"], frame["content"]) == (
            "+14155550100",
            "Transferring you now.",
        )
        await control.end("call-3")
        frame = await peer.recv()
        assert frame["end_call"] is True
        with pytest.raises(CommandFailed, match="not live on any node"):
            await control.say("no-such-call", "hello")
    await control.aclose()


async def test_a_call_whose_node_died_is_listed_as_orphaned(
    redis_server_url: str, redis_namespace: str
) -> None:
    control = CallControl.from_url(redis_server_url, namespace=redis_namespace)
    async with (
        node(EchoAgent(), redis_server_url, redis_namespace, "a") as a,
        retell(a.ws_url, "call-4") as peer,
    ):
        await begin(peer)
        # The node stops beating (as if it hung or died) while holding the call.
        shared = a.app.shared
        assert shared is not None
        assert shared._heartbeat is not None
        shared._heartbeat.cancel()
        await eventually_async(lambda: _orphaned(control, "call-4"))
        with pytest.raises(CommandFailed, match="orphaned"):
            await control.say("call-4", "hello")
    await control.aclose()


async def _orphaned(control: CallControl, call_id: str) -> bool:
    return any(c.call_id == call_id and c.orphaned for c in await control.calls())


async def test_an_ended_call_leaves_the_directory(
    redis_server_url: str, redis_namespace: str
) -> None:
    control = CallControl.from_url(redis_server_url, namespace=redis_namespace)
    async with node(EchoAgent(), redis_server_url, redis_namespace, "a") as a:
        async with retell(a.ws_url, "call-5") as peer:
            await begin(peer)
            assert [c.call_id for c in await control.calls()] == ["call-5"]
        # The caller hung up (close 1000): the call is over, not handed off.
        await eventually_async(lambda: _listed(control, "call-5", False))
    await control.aclose()


async def _listed(control: CallControl, call_id: str, wanted: bool) -> bool:
    return any(c.call_id == call_id for c in await control.calls()) is wanted


async def test_readiness_and_metrics_show_redis(
    redis_server_url: str, redis_namespace: str
) -> None:
    async with (
        node(EchoAgent(), redis_server_url, redis_namespace, "a") as a,
        httpx.AsyncClient(base_url=a.http_url, trust_env=False) as http,
    ):
        assert (await http.get("/readyz")).status_code == 200
        metrics = (await http.get("/metrics")).text
        assert "switchboard_redis_up 1.0" in metrics


async def test_a_webhook_retried_to_another_node_is_delivered_once(
    redis_server_url: str, redis_namespace: str
) -> None:
    key = "test-api-key"
    delivered: list[tuple[str, str]] = []
    async with (
        node(EchoAgent(), redis_server_url, redis_namespace, "a", retell_api_key=key) as a,
        node(EchoAgent(), redis_server_url, redis_namespace, "b", retell_api_key=key) as b,
    ):
        for srv, name in ((a, "a"), (b, "b")):
            srv.app.webhooks.subscribe(lambda e, n=name: delivered.append((n, e.event)))
        ended = msgspec.json.encode({"event": "call_ended", "call": {"call_id": "c9"}})
        updates = [
            msgspec.json.encode(
                {
                    "event": "transcript_updated",
                    "call": {"call_id": "c9", "transcript_object": [{"content": t}]},
                }
            )
            for t in ("hi", "hi there")
        ]
        async with httpx.AsyncClient(trust_env=False) as http:

            async def post(srv: RunningServer, body: bytes) -> int:
                now = int(time.time() * 1000)
                headers = {"x-retell-signature": sign(body, key, now)}
                response = await http.post(f"{srv.http_url}/webhook", content=body, headers=headers)
                return response.status_code

            # The first delivery, then (once it is durable and its claim confirmed)
            # Retell's retries, which the balancer spreads.
            assert await post(a, ended) == 204
            await eventually(lambda: a.app.webhooks.counters.confirmed == 1)
            assert [await post(srv, ended) for srv in (b, b, a)] == [204] * 3
            # Latest wins across nodes: the longer transcript, then a stale retry of the first.
            assert [await post(srv, body) for srv, body in ((a, updates[1]), (b, updates[0]))] == [
                204,
                204,
            ]
        await eventually(lambda: len(delivered) >= 2)
        await eventually(lambda: a.app.webhooks.pending == 0 and b.app.webhooks.pending == 0)
        assert sorted(e for _, e in delivered) == ["call_ended", "transcript_updated"]
        counters = (a.app.webhooks.counters, b.app.webhooks.counters)
        assert sum(c.duplicates + c.superseded for c in counters) == 4


async def test_calls_keep_answering_through_a_redis_outage_and_saves_catch_up(
    redis_server_url: str, redis_namespace: str, fault_proxy: Any
) -> None:
    host, port = redis_server_url.removeprefix("redis://").split("/")[0].split(":")
    proxy = await fault_proxy(host, int(port)).start()
    via_proxy = f"redis://{proxy.url_netloc}/0"
    store = RedisCallStore(redis_client(redis_server_url), namespace=redis_namespace)
    async with (
        node(EchoAgent(), via_proxy, redis_namespace, "a", redis_timeout_ms=100) as a,
        retell(a.ws_url, "call-6") as peer,
        httpx.AsyncClient(base_url=a.http_url, trust_env=False) as http,
    ):
        await begin(peer)
        await peer.request(1, "before")
        await peer.complete(1)
        session = a.app.node.sessions["call-6"]
        await eventually(lambda: not session.unsaved())
        proxy.blackhole()
        # Ten seconds without Redis (redis-py's default retries would hang each command for
        # about 13 s): the caller keeps talking, every turn is answered.
        outage_ends = asyncio.get_running_loop().time() + OUTAGE_S
        rid = 1
        while asyncio.get_running_loop().time() < outage_ends:
            rid += 1
            await peer.request(rid, f"during {rid}")
            assert f"turn {rid}" in spoken(await peer.complete(rid), rid)
            await asyncio.sleep(0.2)  # the caller's pause between turns
        shared = a.app.shared
        assert shared is not None
        await eventually(lambda: not shared.health.is_up)
        assert (await http.get("/readyz")).status_code == 200  # readiness is per node, not Redis
        metrics = (await http.get("/metrics")).text
        assert "switchboard_redis_up 0.0" in metrics
        assert "switchboard_redis_outages_total 1.0" in metrics
        proxy.restore()
        await eventually(lambda: shared.health.is_up, timeout=15)

        await saved_turns(store, "call-6", rid, timeout=15)
        stored = await store.load("call-6")
        assert stored is not None
        assert stored.state == {"count": rid}
        assert shared.health.outages == 1  # one outage, logged and counted once
        await peer.request(rid + 1, "after")
        assert f"turn {rid + 1}" in spoken(await peer.complete(rid + 1), rid + 1)
    await store.client.aclose()


@pytest.mark.parametrize(
    "plant",
    [
        lambda r, k: r.set(k, b"not a hash at all"),
        lambda r, k: r.hset(k, mapping={"epoch": "x", "version": "y", "data": "{"}),
        lambda r, k: r.hset(k, mapping={"epoch": 3, "version": 1, "data": b"{not json"}),
        lambda r, k: r.hset(k, mapping={"epoch": 3, "version": 1, "data": b'{"call_id":"other"}'}),
        lambda r, k: r.hset(k, mapping={"epoch": 3, "version": 1, "data": b"[1, 2, 3]"}),
    ],
    ids=["string", "junk-numbers", "bad-json", "another-call", "foreign-json"],
)
async def test_corrupt_state_under_a_call_key_starts_the_call_fresh(
    redis_server_url: str, redis_namespace: str, store: RedisCallStore, plant: Any
) -> None:
    await plant(store.client, store.call_key("call-7"))
    async with (
        node(EchoAgent(), redis_server_url, redis_namespace, "a") as a,
        retell(a.ws_url, "call-7") as peer,
    ):
        assert await begin(peer) == "Hello from the clinic."  # fresh: greeted
        await peer.request(1, "hello")
        assert "turn 1" in spoken(await peer.complete(1), 1)

        await saved_turns(store, "call-7", 1)
    await store.client.aclose()


class CountingStore(RedisCallStore):
    """The real Redis store, counting what a call asks of it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ops: list[str] = []

    async def claim(self, call_id: str, owner: str) -> Any:
        self.ops.append("claim")
        return await super().claim(call_id, owner)

    async def save(self, state: Any) -> None:
        self.ops.append("save")
        await super().save(state)

    async def load(self, call_id: str) -> Any:
        self.ops.append("load")
        return await super().load(call_id)


async def test_a_turn_costs_one_write_and_no_read(
    redis_server_url: str, redis_namespace: str
) -> None:
    counting = CountingStore(redis_client(redis_server_url), namespace=redis_namespace)
    async with (
        running_server(
            EchoAgent(),
            counting,
            profile="distributed",
            redis_url=redis_server_url,
            redis_namespace=redis_namespace,
            call_details=False,
        ) as srv,
        retell(srv.ws_url, "call-8") as peer,
    ):
        await begin(peer)
        for rid in range(1, 4):
            await peer.request(rid, f"line {rid}")
            await peer.complete(rid)
        await eventually(lambda: counting.ops.count("save") == 4)
    # One claim per socket, one save per completed turn (greeting + 3), never a read: the
    # session serves every turn from memory and writes after content_complete.
    assert counting.ops == ["claim"] + ["save"] * 4
    await counting.client.aclose()

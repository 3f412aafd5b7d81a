"""The distributed profile under the faults production sees: keys lost, Redis restarted
empty, forged claim announcements, corrupt call hashes, a node killed with a save in the
network, a request Retell re-sends after a reconnect.

Real valkey servers (one killed with SIGKILL and started again empty on its port) and
real nodes; the node that must die mid-save is its own process, killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from switchboard.cluster.processes import Child, free_port, start_server
from switchboard.connections import redis_client
from switchboard.control.client import CallControl
from switchboard.state.redis import RedisCallStore
from tests.fixtures.agents import EchoAgent
from tests.fixtures.conditions import eventually, eventually_async
from tests.fixtures.distributed import begin, node
from tests.fixtures.outage import RestartableValkey
from tests.fixtures.server import retell, spoken
from tests.test_serve_drain import exit_code, serve_process

pytestmark = pytest.mark.integration

#: live calls over three nodes when Redis is restarted empty
RESTART_CALLS = 51
RECEPTIONIST = Path(__file__).resolve().parents[1] / "src/switchboard/examples/receptionist.yaml"


@pytest.fixture
def store(redis_server_url: str, redis_namespace: str) -> RedisCallStore:
    return RedisCallStore(redis_client(redis_server_url), namespace=redis_namespace)


async def proxy_to(fault_proxy: Any, redis_url: str) -> Any:
    """A started fault proxy in front of the Redis at ``redis_url``."""
    host, port = redis_url.removeprefix("redis://").split("/")[0].split(":")
    return await fault_proxy(host, int(port)).start()


def turn_count(frames: list[dict[str, Any]], response_id: int) -> str:
    return spoken(frames, response_id).rsplit("(turn ", 1)[-1].rstrip(")")


async def test_a_lost_call_key_never_leaves_two_owners(
    redis_server_url: str, redis_namespace: str, store: RedisCallStore
) -> None:
    """Before owner tokens, both sockets held epoch 1 after the key was lost, and each
    node's saves silently overwrote the other's."""
    async with (
        node(EchoAgent(), redis_server_url, redis_namespace, "a") as a,
        node(EchoAgent(), redis_server_url, redis_namespace, "b") as b,
        retell(a.ws_url, "lost-1") as old,
    ):
        await begin(old)
        await old.request(1, "first")
        await old.complete(1)
        old_session = a.app.node.sessions["lost-1"]
        await store.client.delete(store.call_key("lost-1"))  # evicted, expired, flushed

        # Retell lost sight of node a and reconnected the call to node b.
        async with retell(b.ws_url, "lost-1") as new:
            await new.recv()  # config
            await new.complete(0)
            closed = await old.closed()
            assert closed.rcvd is None  # dropped without a close frame
            assert old_session.fenced
            assert not await old_session._keeper.persist(0.0)
            await new.request(1, "again")
            assert turn_count(await new.complete(1), 1) == "1"
            holder = await store.latest_claim("lost-1")
            assert holder == b.app.node.sessions["lost-1"].token
    await store.client.aclose()


@pytest.mark.parametrize(
    "announcement",
    ["{call} 999999 other-node", "{call} 1 other-node", "{call} 2 a-ghost", "{call}", "\xff\xfe"],
)
async def test_a_claim_announcement_the_store_does_not_back_drops_no_call(
    redis_server_url: str, redis_namespace: str, store: RedisCallStore, announcement: str
) -> None:
    async with (
        node(EchoAgent(), redis_server_url, redis_namespace, "a") as a,
        retell(a.ws_url, "forged-1") as peer,
    ):
        await begin(peer)
        session = a.app.node.sessions["forged-1"]
        for _ in range(3):
            await store.client.publish(
                store.claims_channel, announcement.format(call="forged-1").encode()
            )
        # A real claim by this node's own newer socket is the only thing that may drop
        # it; the announcements above must have been checked and ignored.
        keeper = session._keeper
        if announcement.count(" ") == 2:
            await eventually(lambda: keeper._verify is not None and keeper._verify.done())
        await peer.request(1, "still here")
        assert turn_count(await peer.complete(1), 1) == "1"
        assert not session.fenced
        assert await store.latest_claim("forged-1") == session.token
    await store.client.aclose()


async def test_an_announcement_checked_after_the_newer_socket_ended_still_fences(
    redis_server_url: str, redis_namespace: str, store: RedisCallStore
) -> None:
    # Retell moved the call to another socket, which claimed it and ended (released it)
    # before this node read the announcement: the call's latest claim is not this
    # socket's, so the socket is stale although no socket holds the call now.
    async with (
        node(EchoAgent(), redis_server_url, redis_namespace, "a") as a,
        retell(a.ws_url, "moved-1") as first,
    ):
        await begin(first)
        session = a.app.node.sessions["moved-1"]
        key = store.call_key("moved-1")
        await store.client.hset(key, mapping={"token": "newer-socket-token", "epoch": "2"})
        await store.client.hdel(key, "owner")
        session.claimed_elsewhere(2)
        closed = await first.closed()
        assert closed.rcvd is None  # dropped: Retell reconnects elsewhere if it must
        assert session.fenced
    await store.client.aclose()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("epoch", str(2**63 - 1)),
        ("epoch", str(2**70)),
        ("epoch", "-5"),
        ("epoch", "1e5"),
        ("version", str(2**63 - 1)),
        ("version", "-1"),
        ("version", "abc"),
        ("data", "{not json"),
        ("data", '{"call_id": "someone-else"}'),
        ("data", '{"call_id": "corrupt-1", "turns": "many"}'),
        ("token", "\x00" * 64),
    ],
)
async def test_a_corrupt_call_hash_is_replaced_by_a_fresh_call_never_a_dropped_socket(
    redis_server_url: str, redis_namespace: str, store: RedisCallStore, field: str, value: str
) -> None:
    key = store.call_key("corrupt-1")
    await store.client.hset(
        key, mapping={"epoch": "3", "version": "7", "owner": "x", "token": "t", "data": "{}"}
    )
    await store.client.hset(key, field, value)
    async with (
        node(EchoAgent(), redis_server_url, redis_namespace, "a") as a,
        retell(a.ws_url, "corrupt-1") as peer,
    ):
        await peer.recv()  # config
        await peer.complete(0)
        for rid in (1, 2):
            await peer.request(rid, "hello")
            assert turn_count(await peer.complete(rid), rid)
        session = a.app.node.sessions["corrupt-1"]
        assert not session.fenced
        stored = await store.load("corrupt-1")
        assert stored is not None
        assert stored.turns >= 2
    await store.client.aclose()


async def test_a_request_resent_after_a_reconnect_is_answered_once_from_the_saved_reply(
    redis_server_url: str, redis_namespace: str, store: RedisCallStore
) -> None:
    agent_b = EchoAgent()
    async with (
        node(EchoAgent(), redis_server_url, redis_namespace, "a") as a,
        node(agent_b, redis_server_url, redis_namespace, "b") as b,
        retell(a.ws_url, "resend-1") as first,
    ):
        await begin(first)
        await first.request(1, "transfer me to a human")
        frames = await first.complete(1)
        said = spoken(frames, 1)
        assert frames[-1]["transfer_number"] == "+14155550100"
        # The node vanished from Retell's view before it saw the turn end; Retell
        # reconnects elsewhere and asks the same request again.
        async with retell(b.ws_url, "resend-1") as second:
            assert await begin(second) == ""
            await second.request(1, "transfer me to a human")
            again = await second.complete(1)
            assert spoken(again, 1) == said
            assert again[-1]["transfer_number"] == "+14155550100"
            assert again[-1]["show_transferee_as_caller"] is True
            assert [t.kind.value for t in agent_b.turns_seen] == []  # not generated twice
            await second.request(2, "hello")
            assert turn_count(await second.complete(2), 2) == "2"
        await first.closed()
    stored = await store.load("resend-1")
    assert stored is not None
    assert stored.turns == 2
    await store.client.aclose()


async def test_redis_restarted_empty_leaves_every_call_owned_listed_and_controllable(
    tmp_path: Path,
) -> None:
    """kill -9 of valkey, started again empty on its port, under live calls on three
    nodes: every call is written back by its node, is listed and takes commands, and
    goes on where it was (no second greeting, its state intact), also on another node."""
    valkey = RestartableValkey(tmp_path / "valkey")
    ns = "restart:"
    try:
        async with (
            node(EchoAgent(), valkey.url, ns, "a") as a,
            node(EchoAgent(), valkey.url, ns, "b") as b,
            node(EchoAgent(), valkey.url, ns, "c") as c,
        ):
            servers = [a, b, c]
            peers = []
            contexts = []
            for i in range(RESTART_CALLS):
                ctx = retell(servers[i % 3].ws_url, f"r-{i}")
                peer = await ctx.__aenter__()
                contexts.append(ctx)
                peers.append(peer)
                await begin(peer)
                await peer.request(1, f"caller {i}")
                assert turn_count(await peer.complete(1), 1) == "1"
            try:
                for srv in servers:
                    watch = srv.app.store_watch
                    assert watch is not None
                    await eventually(watch.checked.is_set)
                valkey.kill()
                valkey.start()  # empty: no persistence in this server

                control = CallControl.from_url(valkey.url, namespace=ns)
                try:

                    async def all_listed() -> bool:
                        try:
                            calls = await control.calls()
                        except Exception:
                            return False
                        return sorted(call.call_id for call in calls) == sorted(
                            f"r-{i}" for i in range(RESTART_CALLS)
                        )

                    await eventually_async(all_listed, timeout=30.0)
                    owners = {call.call_id: call.owner for call in await control.calls()}
                    assert owners == {f"r-{i}": "abc"[i % 3] for i in range(RESTART_CALLS)}
                    reply = await control.say("r-4", "A supervisor is joining.")
                    assert reply.ok
                    interrupt = await peers[4].recv_until(
                        lambda f: f.get("response_type") == "agent_interrupt"
                    )
                    assert interrupt[-1]["content"] == "A supervisor is joining."
                finally:
                    await control.aclose()
                for peer in peers:
                    await peer.request(2, "and again")
                    assert turn_count(await peer.complete(2), 2) == "2"
                # A reconnect after the restart resumes from the written-back state.
                async with retell(servers[(0 + 1) % 3].ws_url, "r-0") as moved:
                    assert await begin(moved) == ""
                    await moved.request(3, "moved")
                    assert turn_count(await moved.complete(3), 3) == "3"
                assert sum(s.app.store_watch.losses for s in servers if s.app.store_watch) == 3
            finally:
                for ctx in contexts:
                    await ctx.__aexit__(None, None, None)
    finally:
        valkey.stop()


async def test_a_node_killed_with_its_save_in_the_network_never_told_retell_the_turn_ended(
    tmp_path: Path, redis_server_url: str, redis_namespace: str, fault_proxy: Any
) -> None:
    """A node process killed with SIGKILL while a turn's save is still on its way to Redis.
    Before, ``content_complete`` went out first, so Retell had been told the turn ended
    while Redis never got it: the next node greeted again or asked again. Now the save
    comes first: Retell still waits on that request, asks it again after reconnecting,
    and the next node resumes from everything Retell was told had ended."""
    proxy = await proxy_to(fault_proxy, redis_server_url)
    env = {
        "SWITCHBOARD_PROFILE": "distributed",
        "SWITCHBOARD_REDIS_URL": f"redis://{proxy.url_netloc}/0",
        "SWITCHBOARD_REDIS_NAMESPACE": redis_namespace,
        "SWITCHBOARD_NODE_ID": "doomed",
        "SWITCHBOARD_CALL_DETAILS": "false",
        # the held save must still be waiting when the node dies, and nothing else may
        # write meanwhile
        "SWITCHBOARD_REDIS_TIMEOUT_MS": "60000",
        "SWITCHBOARD_HEARTBEAT_MS": "600000",
        "SWITCHBOARD_LOG_LEVEL": "warning",
    }
    # In a thread: the proxy the node starts through runs in this event loop.
    child: Child = await asyncio.to_thread(
        start_server, port=free_port(), agent_file=RECEPTIONIST, log_dir=tmp_path, env=env
    )
    url = f"ws://127.0.0.1:{child.port}/llm-websocket"
    store = RedisCallStore(redis_client(redis_server_url), namespace=redis_namespace)
    try:
        async with retell(url, "killed-1") as peer:
            greeting = await begin(peer)
            assert greeting
            await eventually_async(lambda: _greeted(store, "killed-1"))
            proxy.hold()
            await peer.request(1, "I'd like to book an appointment")
            await eventually(lambda: b"EVALSHA" in proxy.held(), timeout=30.0)
            os.kill(child.pid, signal.SIGKILL)
            await peer.closed()
            completes = [
                f
                for f in peer.frames
                if f.get("response_id") == 1 and f.get("content_complete") is True
            ]
            assert completes == []  # Retell was never told turn 1 ended
        # The save died with the node (it never reached Redis).
        await eventually(lambda: proxy.held() == b"", timeout=30.0)
        proxy.release()
        async with (
            node(EchoAgent(), redis_server_url, redis_namespace, "survivor") as survivor,
            retell(survivor.ws_url, "killed-1") as again,
        ):
            assert await begin(again) == ""  # greeted once, whatever the instant
            await again.request(1, "I'd like to book an appointment")
            assert turn_count(await again.complete(1), 1) == "1"
    finally:
        child.stop()
        await store.client.aclose()


async def _greeted(store: RedisCallStore, call_id: str) -> bool:
    stored = await store.load(call_id)
    return stored is not None and stored.greeted


async def test_a_drain_waits_for_the_save_in_flight_before_the_process_exits(
    redis_server_url: str, redis_namespace: str, fault_proxy: Any
) -> None:
    """SIGTERM while a turn's save is still on its way to Redis: the node hands the call
    off, then waits for that save (the Redis client stays open for it) before it exits."""
    proxy = await proxy_to(fault_proxy, redis_server_url)
    store = RedisCallStore(redis_client(redis_server_url), namespace=redis_namespace)
    env = {
        "SWITCHBOARD_PROFILE": "distributed",
        "SWITCHBOARD_REDIS_URL": f"redis://{proxy.url_netloc}/0",
        "SWITCHBOARD_REDIS_NAMESPACE": redis_namespace,
        "SWITCHBOARD_NODE_ID": "draining",
        "SWITCHBOARD_REDIS_TIMEOUT_MS": "60000",
        "SWITCHBOARD_HEARTBEAT_MS": "600000",
        "SWITCHBOARD_DRAIN_TIMEOUT_S": "0.2",
        "SWITCHBOARD_DRAIN_SAVE_TIMEOUT_S": "60",
    }
    try:
        async with (
            serve_process(**env) as (process, node_port),
            retell(f"ws://127.0.0.1:{node_port}/llm-websocket", "drain-1") as peer,
        ):
            await begin(peer)
            await eventually_async(lambda: _greeted(store, "drain-1"))
            proxy.hold()
            await peer.request(1, "hello")
            await eventually(lambda: b"EVALSHA" in proxy.held(), timeout=30.0)
            process.send_signal(signal.SIGTERM)
            await peer.closed()  # handed off: the drain is under way
            assert process.returncode is None  # still waiting for the save
            proxy.release()
            assert await exit_code(process) == 0
        stored = await store.load("drain-1")
        assert stored is not None
        assert stored.turns == 1
    finally:
        await store.client.aclose()


@pytest.mark.parametrize(
    ("started_s_ago", "greeted_again"), [(120.0, False), (0.0, True)], ids=["reconnect", "new"]
)
async def test_a_call_whose_state_cannot_be_read_is_greeted_only_if_it_just_began(
    redis_server_url: str,
    redis_namespace: str,
    fault_proxy: Any,
    started_s_ago: float,
    greeted_again: bool,
) -> None:
    """Redis unreachable when a socket opens: the claim waits a moment, then the call is
    served without its state. A reconnect (Retell's call details show a call that began
    two minutes ago) is not greeted a second time; a call that just began is greeted."""
    proxy = await proxy_to(fault_proxy, redis_server_url)
    via_proxy = f"redis://{proxy.url_netloc}/0"
    async with node(
        EchoAgent(),
        via_proxy,
        redis_namespace,
        "b",
        call_details=True,
        redis_timeout_ms=100,
        state_wait_ms=300,
    ) as b:
        proxy.blackhole()
        async with retell(b.ws_url, "unknown-1") as peer:
            assert (await peer.recv())["response_type"] == "config"
            started = int((time.time() - started_s_ago) * 1000)
            await peer.send(
                interaction_type="call_details",
                call={"call_id": "unknown-1", "start_timestamp": started},
            )
            begin_text = spoken(await peer.complete(0), 0)
            assert bool(begin_text) is greeted_again
            await peer.request(1, "hello")
            assert "You said: hello" in spoken(await peer.complete(1), 1)
        proxy.restore()


@pytest.mark.parametrize("reconnect", ["after_write_back", "before_write_back"])
async def test_a_call_dropped_just_before_redis_restarted_empty_resumes_with_its_state(
    tmp_path: Path, reconnect: str
) -> None:
    """The socket drops (a load balancer restart), then Redis restarts empty before
    Retell's reconnect lands: the node that served the call writes its last state back,
    so the reconnect on another node is not greeted again and its state is intact. A
    reconnect that lands first waits for that write-back instead of starting fresh."""
    valkey = RestartableValkey(tmp_path / "valkey")
    ns = "dropped:"
    try:
        async with (
            node(EchoAgent(), valkey.url, ns, "a") as a,
            node(EchoAgent(), valkey.url, ns, "b") as b,
        ):
            async with retell(a.ws_url, "drop-1") as peer:
                await begin(peer)
                await peer.request(1, "hello")
                assert turn_count(await peer.complete(1), 1) == "1"
                peer.ws.transport.abort()  # no close frame: Retell will reconnect
            await eventually(lambda: "drop-1" in a.app.node.recent)
            watch = a.app.store_watch
            assert watch is not None
            await eventually(watch.checked.is_set)
            valkey.kill()
            valkey.start()
            if reconnect == "before_write_back":
                async with retell(b.ws_url, "drop-1") as early:
                    assert await begin(early) == ""
                    await early.request(2, "hello again")
                    assert turn_count(await early.complete(2), 2) == "2"
                return
            await eventually(lambda: watch.losses == 1, timeout=30.0)
            store = RedisCallStore(redis_client(valkey.url), namespace=ns)
            try:

                async def written_back() -> bool:
                    try:
                        return await store.load("drop-1") is not None
                    except Exception:
                        return False

                await eventually_async(written_back, timeout=30.0)
            finally:
                await store.client.aclose()
            async with retell(b.ws_url, "drop-1") as again:
                assert await begin(again) == ""
                await again.request(2, "hello again")
                assert turn_count(await again.complete(2), 2) == "2"
    finally:
        valkey.stop()

"""The live-call directory lists no call that no node holds, with real nodes killed,
restarted and paused.

A call whose node died used to stay in ``{ns}live`` and in ``switchboard calls list``
(as *orphaned*) until its state expired, an hour later; a node restarted under the same
id even listed its previous life's calls as its own. Now such a call leaves the live set
three heartbeats after its node's heartbeat expired, and its reconnect lists it again.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from switchboard.cluster.processes import Child, free_port, start_server
from switchboard.config import builtin_example
from switchboard.control.client import CallControl
from switchboard.control.directory import Directory
from switchboard.state.redis import RedisCallStore
from tests.fixtures.agents import EchoAgent
from tests.fixtures.conditions import eventually, eventually_async
from tests.fixtures.distributed import begin, node
from tests.fixtures.server import retell, spoken

pytestmark = pytest.mark.system


@contextmanager
def serve_node(
    log_dir: Path, redis_url: str, namespace: str, node_id: str, heartbeat_ms: int
) -> Iterator[Child]:
    """``switchboard serve`` as its own process, in the distributed profile."""
    env = {
        "SWITCHBOARD_PROFILE": "distributed",
        "SWITCHBOARD_REDIS_URL": redis_url,
        "SWITCHBOARD_REDIS_NAMESPACE": namespace,
        "SWITCHBOARD_NODE_ID": node_id,
        "SWITCHBOARD_HEARTBEAT_MS": str(heartbeat_ms),
        "SWITCHBOARD_CALL_DETAILS": "false",
    }
    child = start_server(
        port=free_port(),
        agent_file=builtin_example("receptionist.yaml"),
        log_dir=log_dir / node_id,
        env=env,
    )
    try:
        yield child
    finally:
        child.send_signal(signal.SIGCONT)
        child.stop()


def ws_url(child: Child) -> str:
    return f"ws://127.0.0.1:{child.port}/llm-websocket"


async def in_live_set(control: CallControl, call_id: str) -> bool:
    return await control.directory.client.zscore(control.directory.live_key, call_id) is not None


async def greeting_saved(control: CallControl, call_id: str) -> None:
    """Until the greeting is saved (write-behind, after the begin message): a node killed
    before that loses it, which is another fault than the one these tests are about."""
    store = RedisCallStore(control.directory.client, namespace=control.directory.namespace)

    async def saved() -> bool:
        state = await store.load(call_id)
        return state is not None and state.greeted

    await eventually_async(saved)


async def owner_listed(control: CallControl, call_id: str) -> str | None:
    return next((c.owner for c in await control.calls() if c.call_id == call_id), None)


async def test_a_killed_nodes_call_leaves_the_live_set_and_its_reconnect_lists_it_again(
    tmp_path: Path, redis_server_url: str, redis_namespace: str
) -> None:
    control = CallControl.from_url(redis_server_url, namespace=redis_namespace)
    with serve_node(tmp_path, redis_server_url, redis_namespace, "doomed", 300) as doomed:
        async with node(EchoAgent(), redis_server_url, redis_namespace, "b") as b:
            async with retell(ws_url(doomed), "call-1") as peer:
                assert "Maple Street" in await begin(peer)
                await greeting_saved(control, "call-1")
                assert await owner_listed(control, "call-1") == "doomed"
                doomed.send_signal(signal.SIGKILL)
                await asyncio.to_thread(doomed.wait, 10.0)
                await peer.closed()
            # Nobody lists calls meanwhile: node b's heartbeat prunes the ghost.
            await eventually_async(lambda: _not(in_live_set(control, "call-1")), timeout=20)
            assert await owner_listed(control, "call-1") is None
            # Retell reconnects the call (later than the prune): it resumes, and is listed.
            async with retell(b.ws_url, "call-1") as peer:
                assert await begin(peer) == ""
                assert await owner_listed(control, "call-1") == "b"
    await control.aclose()


async def test_a_node_restarted_under_its_id_does_not_list_its_previous_lifes_calls(
    tmp_path: Path, redis_server_url: str, redis_namespace: str
) -> None:
    control = CallControl.from_url(redis_server_url, namespace=redis_namespace)
    with serve_node(tmp_path / "first", redis_server_url, redis_namespace, "n1", 300) as first:
        async with retell(ws_url(first), "call-2") as peer:
            assert "Maple Street" in await begin(peer)
            await greeting_saved(control, "call-2")
            first.send_signal(signal.SIGKILL)
            await asyncio.to_thread(first.wait, 10.0)
            await peer.closed()
    with serve_node(tmp_path / "again", redis_server_url, redis_namespace, "n1", 300) as again:
        # "n1" beats again at once, so the call's owner looks alive: it is still a ghost.
        await eventually_async(lambda: _not(in_live_set(control, "call-2")), timeout=20)
        assert await owner_listed(control, "call-2") is None
        async with retell(ws_url(again), "call-2") as peer:
            assert await begin(peer) == ""
            assert await owner_listed(control, "call-2") == "n1"
    await control.aclose()


async def test_a_paused_nodes_calls_are_listed_again_when_it_resumes(
    tmp_path: Path, redis_server_url: str, redis_namespace: str
) -> None:
    control = CallControl.from_url(redis_server_url, namespace=redis_namespace)
    with serve_node(tmp_path, redis_server_url, redis_namespace, "paused", 200) as paused:
        async with (
            node(EchoAgent(), redis_server_url, redis_namespace, "b"),
            retell(ws_url(paused), "call-3") as peer,
        ):
            assert "Maple Street" in await begin(peer)
            await greeting_saved(control, "call-3")
            paused.send_signal(signal.SIGSTOP)
            # Long enough to look dead for three beats more: node b prunes the call.
            await eventually_async(lambda: _not(in_live_set(control, "call-3")), timeout=20)
            paused.send_signal(signal.SIGCONT)
            # Its next beat is late: it lists the calls it still holds again.
            await eventually_async(lambda: in_live_set(control, "call-3"), timeout=20)
            assert await owner_listed(control, "call-3") == "paused"
            await peer.send(
                interaction_type="response_required",
                response_id=1,
                transcript=[{"role": "user", "content": "Are you open on Saturday?"}],
            )
            assert spoken(await peer.complete(1), 1)
    await control.aclose()


async def _not(condition: object) -> bool:
    assert asyncio.iscoroutine(condition)
    return not await condition


async def test_calls_written_back_and_pruned_before_their_nodes_next_beat_are_listed_at_it(
    redis_server_url: str, redis_namespace: str
) -> None:
    """Redis lost its data; the node wrote its calls back, but another node pruned them
    (their owner had no entry yet) before this node's next beat. That beat lists them
    again, though it is not late. (A 3-node restart test once found 51 calls written
    back and never listed.)"""
    control = CallControl.from_url(redis_server_url, namespace=redis_namespace)
    # Beats an hour apart: this test makes each step itself, in the order of the race.
    async with (
        node(EchoAgent(), redis_server_url, redis_namespace, "a", heartbeat_ms=3_600_000) as a,
        retell(a.ws_url, "call-w") as peer,
    ):
        await begin(peer)
        await greeting_saved(control, "call-w")
        client = control.directory.client
        keys = [k async for k in client.scan_iter(match=f"{redis_namespace}*")]
        await client.delete(*keys)  # Redis lost this cluster's data
        assert await a.app.node.reassert_calls() == 1
        assert await in_live_set(control, "call-w")
        # Another node's prune, before "a" beats again: "a" has no entry, the call goes.
        other = Directory(client, namespace=redis_namespace)
        await other.prune_page(0)
        assert not await in_live_set(control, "call-w")
        shared = a.app.shared
        assert shared is not None
        node_ = a.app.node
        await shared.beat(
            lambda: shared.node_info(node_.active, False), lambda: list(node_.sessions)
        )
        assert await owner_listed(control, "call-w") == "a"
    await control.aclose()


async def test_beats_prune_in_passes_with_a_rest_between(
    redis_server_url: str, redis_namespace: str
) -> None:
    """A pass of pages, then ``PRUNE_REST_BEATS`` beats without: a page costs a command per
    live call, and ghosts only come from dead nodes."""
    control = CallControl.from_url(redis_server_url, namespace=redis_namespace)
    # Beats an hour apart: the test makes each beat itself.
    async with node(
        EchoAgent(), redis_server_url, redis_namespace, "a", heartbeat_ms=3_600_000
    ) as a:
        shared = a.app.shared
        assert shared is not None

        async def beat() -> None:
            await shared.beat(lambda: shared.node_info(0, False), list)

        client = control.directory.client
        # The node's first beat, at its start, made a pass; the rest has begun.
        await eventually(lambda: shared._next_prune > 0.0)
        await client.zadd(control.directory.live_key, {"ghost-1": 1})  # no state: a ghost
        await beat()
        assert await in_live_set(control, "ghost-1")  # resting
        shared._next_prune = 0.0  # the rest is over
        await beat()
        assert not await in_live_set(control, "ghost-1")
    await control.aclose()

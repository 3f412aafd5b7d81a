"""Profile parity: the invariants of docs/architecture.md, each one test run on all three
profiles, from real parts.

* ``single``: one node, memory store, in-process events (a ``memory://`` bus);
* ``distributed``: two nodes sharing a real valkey (state, claims, directory), in-process
  events per node;
* ``event-driven``: two nodes on the same valkey, events on its Redis Streams bus.

What differs between profiles lives in ``ProfileRig``; the tests say only what must hold.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from switchboard.agents.base import Agent
from switchboard.events.bus import EventBus
from switchboard.events.buses.redis import RedisStreamBus
from switchboard.events.types import TurnCompleted
from tests.fixtures.agents import EchoAgent, FailingAgent, GatedAgent, SilentAgent
from tests.fixtures.conditions import eventually
from tests.fixtures.distributed import begin
from tests.fixtures.memory_transport import memory_call
from tests.fixtures.server import RetellPeer, RunningServer, retell, running_server, spoken

pytestmark = pytest.mark.integration

PROFILES = ["single", "distributed", "event-driven"]
FALLBACK = "Sorry, I'm having a little trouble. Could you say that again?"
CONVERSATION = ["hello", "what are your hours", "careful", "tell me everything", "bye"]


@dataclass
class ProfileRig:
    """How to start a node of one profile; everything else is the same on all three."""

    profile: str
    redis_url: str | None
    namespace: str
    tmp: Path

    @property
    def nodes(self) -> int:
        """How many nodes a reconnect can choose from."""
        return 1 if self.profile == "single" else 2

    def settings(self, node_id: str) -> dict[str, Any]:
        settings: dict[str, Any] = {
            "profile": self.profile,
            "node_id": node_id,
            "call_details": False,
            "outbox_dir": self.tmp / f"outbox-{node_id}",
            "bus_url": "memory://",
        }
        if self.profile != "single":
            settings |= {
                "redis_url": self.redis_url,
                "redis_namespace": self.namespace,
                "heartbeat_ms": 200,
            }
        if self.profile == "event-driven":
            settings["bus_url"] = self.redis_url
        return settings

    @contextlib.asynccontextmanager
    async def node(self, agent: Agent, node_id: str, **extra: Any) -> AsyncIterator[RunningServer]:
        async with running_server(agent, **(self.settings(node_id) | extra)) as srv:
            shared = srv.app.shared
            if shared is not None:
                await eventually(
                    lambda: shared.listener is not None and shared.listener.subscribed.is_set()
                )
            yield srv

    @contextlib.asynccontextmanager
    async def cluster(self, agent: Agent, **extra: Any) -> AsyncIterator[list[RunningServer]]:
        """The profile's nodes (one for ``single``); a reconnect goes to the last one."""
        async with contextlib.AsyncExitStack() as stack:
            nodes = [
                await stack.enter_async_context(self.node(agent, f"node-{i}", **extra))
                for i in range(self.nodes)
            ]
            yield nodes

    def buses(self, nodes: list[RunningServer]) -> list[EventBus]:
        """Where the profile's events can be read: each node's in-process bus, or the one
        shared Redis Streams bus."""
        if self.profile == "event-driven":
            assert self.redis_url is not None
            return [RedisStreamBus(self.redis_url, namespace=self.namespace)]
        buses = []
        for srv in nodes:
            outbox = srv.app.node.outbox
            assert outbox is not None
            buses.append(outbox.bus)
        return buses


@pytest.fixture(params=PROFILES)
def rig(request: pytest.FixtureRequest, tmp_path: Path) -> ProfileRig:
    if request.param == "single":
        return ProfileRig("single", None, "", tmp_path)
    return ProfileRig(
        request.param,
        request.getfixturevalue("redis_server_url"),
        request.getfixturevalue("redis_namespace"),
        tmp_path,
    )


async def talk(peer: RetellPeer, lines: list[str], first_id: int = 1) -> None:
    for rid, line in enumerate(lines, first_id):
        await peer.request(rid, line)
        await peer.complete(rid)


# ---------------------------------------------------------------- 1. same responses


async def test_the_same_conversation_gives_the_same_frames_on_every_profile(
    rig: ProfileRig,
) -> None:
    """Invariant 1, against the session alone on an in-memory transport as the reference."""
    async with memory_call(EchoAgent()) as reference:
        await reference.transport.complete(0)
        for rid, line in enumerate(CONVERSATION, 1):
            reference.request(rid, line)
            await reference.transport.complete(rid)
        expected = reference.transport.frames
    async with rig.cluster(EchoAgent()) as nodes, retell(nodes[0].ws_url, "parity") as peer:
        await begin(peer)
        await talk(peer, CONVERSATION)
    assert peer.frames == expected
    assert len(expected) > 12


# ---------------------------------------------------------------- 2. supersession


async def test_no_frame_of_a_superseded_id_after_the_newer_request_is_read(
    rig: ProfileRig,
) -> None:
    agent = GatedAgent()
    async with rig.cluster(agent) as nodes, retell(nodes[0].ws_url, "barge-in") as peer:
        await begin(peer)
        await peer.request(1, "first")
        await peer.recv_until(lambda f: f.get("response_id") == 1)
        await peer.request(2, "second")
        await eventually(lambda: agent.cancelled == [1])  # the agent's stream was closed
        agent.release.set()
        frames = await peer.complete(2)
    assert spoken(frames, 2) == "Thinking about 2.Answer 2."
    assert all(f.get("response_id") != 1 for f in frames)


# ---------------------------------------------------------------- 3. every id completes


async def test_an_agent_error_ends_the_turn_with_a_spoken_fallback(rig: ProfileRig) -> None:
    async with rig.cluster(FailingAgent()) as nodes, retell(nodes[0].ws_url, "boom") as peer:
        await begin(peer)
        await peer.request(1, "hello")
        assert spoken(await peer.complete(1), 1) == FALLBACK


async def test_an_agent_that_never_speaks_ends_with_a_spoken_fallback(rig: ProfileRig) -> None:
    agent = SilentAgent()
    async with (
        rig.cluster(agent, first_chunk_timeout_ms=200) as nodes,
        retell(nodes[0].ws_url, "hung") as peer,
    ):
        await begin(peer)
        await peer.request(1, "hello")
        assert spoken(await peer.complete(1), 1) == FALLBACK
        assert agent.cancelled.is_set()


# ---------------------------------------------------------------- 4. reconnect resumes


async def test_a_reconnect_on_any_node_resumes_the_call_and_fences_the_old_owner(
    rig: ProfileRig,
) -> None:
    async with rig.cluster(EchoAgent()) as nodes, retell(nodes[0].ws_url, "resume") as old:
        await begin(old)
        await talk(old, ["hello", "again"])
        old_session = nodes[0].app.node.sessions["resume"]
        await eventually(lambda: not old_session.unsaved())
        # Retell lost the socket and reconnected, here to the profile's last node.
        async with retell(nodes[-1].ws_url, "resume") as new:
            assert await begin(new) == ""  # never a second greeting
            assert (await old.closed()).rcvd is None  # dropped, not ended
            assert not await old_session._keeper.persist(0.0)  # the old owner cannot write
            await new.request(3, "third")
            assert "(turn 3)" in spoken(await new.complete(3), 3)  # custom state intact


async def test_a_completed_request_resent_after_a_reconnect_is_answered_once(
    rig: ProfileRig,
) -> None:
    agent = EchoAgent()
    async with rig.cluster(agent) as nodes:
        async with retell(nodes[0].ws_url, "resent") as old:
            await begin(old)
            await talk(old, ["hello", "book me in"])
            first = spoken(old.frames, 2)
            session = nodes[0].app.node.sessions["resent"]
            await eventually(lambda: not session.unsaved())
        asked = len(agent.turns_seen)
        # Retell re-sends the request it last sent after reconnecting, here to the last node.
        async with retell(nodes[-1].ws_url, "resent") as new:
            assert await begin(new) == ""
            await new.request(2, "book me in")
            assert spoken(await new.complete(2), 2) == first
        assert len(agent.turns_seen) == asked  # answered from the saved reply, not again


# ---------------------------------------------------------------- 5. events once in effect


async def test_every_completed_turn_reaches_the_consumer_once_in_effect(
    rig: ProfileRig,
) -> None:
    async with rig.cluster(EchoAgent()) as nodes:
        async with retell(nodes[0].ws_url, "events") as peer:
            await begin(peer)
            await talk(peer, ["one", "two"])
        async with retell(nodes[-1].ws_url, "events") as peer:
            await begin(peer)
            await talk(peer, ["three"], first_id=3)
        expected = {("events", rid) for rid in (0, 1, 2, 3)}
        buses = rig.buses(nodes)
        consumers = [bus.consumer("parity", "reader") for bus in buses]
        seen: dict[str, tuple[str, int]] = {}  # event id -> turn: dedupe by id
        async with asyncio.timeout(30):
            while not expected <= set(seen.values()):
                for consumer in consumers:
                    batch = await consumer.fetch(max_events=100, timeout_s=0.2)
                    for event in batch.events:
                        if isinstance(event.data, TurnCompleted):
                            seen[event.id] = (event.call_id, event.data.response_id)
                    await consumer.ack(batch)
        for consumer in consumers:
            await consumer.close()
        if rig.profile == "event-driven":
            for bus in buses:
                await bus.close()
    # After dedupe by event id, each completed turn is there exactly once.
    assert sorted(seen.values()) == sorted(expected)


# ---------------------------------------------------------------- 6. bad input is contained


async def test_bad_input_on_one_call_harms_neither_it_nor_another_call(rig: ProfileRig) -> None:
    async with (
        rig.cluster(EchoAgent(), max_frame_bytes=4096) as nodes,
        retell(nodes[0].ws_url, "garbage") as bad,
        retell(nodes[0].ws_url, "bystander") as good,
    ):
        await begin(bad)
        await begin(good)
        await bad.send_raw("{not json")
        await bad.send_raw(b"\x00\x01binary")
        await bad.send(interaction_type="no_such_thing", response_id=9)
        await bad.send(interaction_type="response_required", response_id="x", transcript=3)
        async with retell(nodes[0].ws_url, "oversized") as huge:
            await begin(huge)
            await huge.send_raw("x" * 8192)
            closed = (await huge.closed()).rcvd
            assert closed is not None
            assert closed.code == 1009  # "message too big": that socket only
        await bad.request(1, "still there?")
        assert "still there?" in spoken(await bad.complete(1), 1)
        await good.request(1, "hello")
        assert "hello" in spoken(await good.complete(1), 1)
        async with httpx.AsyncClient(trust_env=False) as http:
            ready = await http.get(f"{nodes[0].http_url}/readyz")
        assert ready.status_code == 200
        rejected = nodes[0].app.node.metrics.registry.get_sample_value(
            "switchboard_frames_rejected_total", {"reason": "malformed"}
        )
        assert rejected is not None
        assert rejected >= 2

"""The command listener on its own socket (``switchboard.redis_link``), against a real
valkey-server: another node's claim reaches the call's session and this node's own does
not; commands are carried out in the order they were published; a malformed announcement
or command harms nothing; and a subscription Redis drops (``CLIENT KILL``) is made again,
counted as one outage. Under RESP2 and RESP3 (whose messages are push replies)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from redis.asyncio import Redis

from switchboard.connections import RedisHealth, redis_client
from switchboard.control.commands import Reply, SayCommand, decode_reply, encode
from switchboard.control.listener import CommandListener
from tests.fixtures.conditions import eventually

pytestmark = pytest.mark.integration

CLAIMS = "claims"


@dataclass
class _Session:
    """What the listener needs of a session, recording what it was told."""

    epoch: int = 1
    fenced: bool = False
    closed: bool = False
    claims: list[int] = field(default_factory=list)
    said: list[str] = field(default_factory=list)

    def claimed_elsewhere(self, epoch: int) -> None:
        self.claims.append(epoch)

    async def interrupt(
        self, content: str, *, transfer_number: str | None = None, end_call: bool = False
    ) -> None:
        self.said.append(content)


@pytest.fixture(params=["2", "3"], ids=["resp2", "resp3"])
async def client(request: pytest.FixtureRequest, redis_server_url: str) -> AsyncIterator[Redis]:
    separator = "&" if "?" in redis_server_url else "?"
    made = redis_client(f"{redis_server_url}{separator}protocol={request.param}")
    yield made
    await made.aclose()


async def _listening(
    client: Redis, namespace: str, sessions: dict[str, _Session]
) -> tuple[CommandListener, RedisHealth]:
    health = RedisHealth(client)
    listener = CommandListener(
        client,
        namespace=namespace,
        node_id="node-a",
        claims_channel=f"{namespace}{CLAIMS}",
        sessions=sessions.get,
        health=health,
    )
    listener.start()
    await asyncio.wait_for(listener.subscribed.wait(), timeout=10)
    return listener, health


async def test_another_nodes_claim_reaches_the_session_and_its_own_does_not(
    client: Redis, redis_namespace: str
) -> None:
    session = _Session()
    listener, health = await _listening(client, redis_namespace, {"call-1": session})
    try:
        channel = f"{redis_namespace}{CLAIMS}"
        for message in (b"call-1 5 node-a", b"garbage", b"\xff\xfe", b"call-2 3 node-b"):
            await client.publish(channel, message)  # own, malformed, not this node's call
        await client.publish(channel, b"call-1 7 node-b")
        await eventually(lambda: session.claims == [7])
        assert health.outages == 0
    finally:
        await listener.stop()
        await health.close()


async def test_commands_are_carried_out_in_order_and_answered(
    client: Redis, redis_namespace: str
) -> None:
    session = _Session()
    listener, health = await _listening(client, redis_namespace, {"call-1": session})
    replies = client.pubsub(ignore_subscribe_messages=True)
    reply_to = f"{redis_namespace}replies"
    await replies.subscribe(reply_to)
    try:
        channel = listener.commands_channel
        await client.publish(channel, b"{not a command")
        for i in range(5):
            command = SayCommand(id=f"cmd-{i}", call_id="call-1", reply_to=reply_to, text=f"{i}")
            await client.publish(channel, encode(command))
        await eventually(lambda: listener.commands_handled == 5)
        assert session.said == ["0", "1", "2", "3", "4"]
        answered: list[Reply] = []
        async with asyncio.timeout(10):
            while len(answered) < 5:
                message = await replies.get_message(timeout=1.0)
                if message is not None:  # (None: the subscription's own confirmation)
                    answered.append(decode_reply(message["data"]))
        assert [(r.id, r.ok) for r in answered] == [(f"cmd-{i}", True) for i in range(5)]
    finally:
        await replies.aclose()
        await listener.stop()
        await health.close()


async def test_a_dropped_subscription_is_made_again(client: Redis, redis_namespace: str) -> None:
    session = _Session()
    others = await _subscribers(client)
    listener, health = await _listening(client, redis_namespace, {"call-1": session})
    try:
        (ours,) = await _subscribers(client) - others  # other tests' subscribers stay
        assert await client.execute_command("CLIENT", "KILL", "ID", ours) == 1
        await eventually(lambda: health.outages == 1)
        await asyncio.wait_for(health.wait_up(), timeout=10)
        # cleared before the outage was counted, so this is the new subscription, confirmed
        await eventually(lambda: listener.subscribed.is_set())
        await client.publish(f"{redis_namespace}{CLAIMS}", b"call-1 9 node-b")
        await eventually(lambda: 9 in session.claims)
    finally:
        await listener.stop()
        await health.close()


async def _subscribers(client: Redis) -> set[str]:
    """The ids of the server's pub/sub connections."""
    return {str(c["id"]) for c in await client.client_list(_type="pubsub")}

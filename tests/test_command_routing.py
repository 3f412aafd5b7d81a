"""Commands reach whichever node owns the call now, and are carried out once per id.

Real nodes in the test's loop, one real valkey-server: the call moves between nodes the
way it does in production (its socket drops, Retell reconnects it elsewhere), and a
command is caught in the middle.
"""

from __future__ import annotations

import asyncio

import msgspec
import pytest
from typer.testing import CliRunner

from switchboard.cli import app
from switchboard.control.client import CallControl, CommandFailed
from switchboard.control.commands import Reply, SayCommand, encode
from switchboard.control.directory import command_channel
from tests.fixtures.agents import EchoAgent
from tests.fixtures.conditions import eventually, eventually_async
from tests.fixtures.distributed import begin, node
from tests.fixtures.server import RetellPeer, RunningServer, retell

pytestmark = pytest.mark.integration


def _handled(srv: RunningServer) -> int:
    shared = srv.app.shared
    assert shared is not None
    assert shared.listener is not None
    return shared.listener.commands_handled


async def _no_interrupt(peer: RetellPeer) -> None:
    """Nothing was spoken on ``peer`` up to now: a ping answered after it proves it."""
    await peer.send(interaction_type="ping_pong", timestamp=1)
    frames = await peer.recv_until(lambda f: f.get("response_type") == "ping_pong")
    assert [f for f in frames if f.get("response_type") == "agent_interrupt"] == []


async def test_a_command_sent_while_the_call_moves_reaches_the_new_owner(
    redis_server_url: str, redis_namespace: str
) -> None:
    control = CallControl.from_url(redis_server_url, namespace=redis_namespace, move_wait_s=30)
    async with (
        node(EchoAgent(), redis_server_url, redis_namespace, "a") as a,
        node(EchoAgent(), redis_server_url, redis_namespace, "b") as b,
        retell(a.ws_url, "call-move") as old,
    ):
        await begin(old)
        # The socket on node a drops (no hang-up): Redis still names a as the owner
        # until Retell's reconnect lands somewhere.
        a.app.node.sessions["call-move"].abort()
        await old.closed()
        await eventually(lambda: "call-move" not in a.app.node.sessions)
        handled = _handled(a)
        command = asyncio.create_task(control.say("call-move", "Still there?"))
        # Node a answers "not here", again and again: the sender keeps waiting for the
        # move instead of giving up.
        await eventually(lambda: _handled(a) >= handled + 2 or command.done())
        assert not command.done()
        async with retell(b.ws_url, "call-move") as new:
            await begin(new)
            reply = await asyncio.wait_for(command, 30)
            assert reply.ok
            assert reply.node == "b"
            frame = await new.recv()
            assert (frame["response_type"], frame["content"]) == (
                "agent_interrupt",
                "Still there?",
            )
    await control.aclose()


async def test_a_command_for_an_orphaned_call_waits_for_its_reconnect(
    redis_server_url: str, redis_namespace: str
) -> None:
    control = CallControl.from_url(redis_server_url, namespace=redis_namespace, move_wait_s=30)
    async with (
        node(EchoAgent(), redis_server_url, redis_namespace, "a") as a,
        node(EchoAgent(), redis_server_url, redis_namespace, "b") as b,
        retell(a.ws_url, "call-orphan") as old,
    ):
        await begin(old)
        shared = a.app.shared
        assert shared is not None
        assert shared._heartbeat is not None
        shared._heartbeat.cancel()  # node a hangs: its calls turn orphaned

        async def orphaned() -> bool:
            return any(c.orphaned for c in await control.calls())

        await eventually_async(orphaned)
        command = asyncio.create_task(control.transfer("call-orphan", "+15550100", "Hold on."))
        async with retell(b.ws_url, "call-orphan") as new:
            await begin(new)
            reply = await asyncio.wait_for(command, 30)
            assert reply.node == "b"
            frame = await new.recv()
            assert frame["transfer_number"] == "+15550100"
    await control.aclose()


async def test_a_command_retried_after_its_reply_was_lost_is_carried_out_once(
    redis_server_url: str, redis_namespace: str
) -> None:
    control = CallControl.from_url(redis_server_url, namespace=redis_namespace, move_wait_s=30)
    async with (
        node(EchoAgent(), redis_server_url, redis_namespace, "a") as a,
        node(EchoAgent(), redis_server_url, redis_namespace, "b") as b,
        retell(a.ws_url, "call-once") as old,
    ):
        await begin(old)
        # The command reaches node a, which speaks; its reply goes to a channel nobody
        # reads any more (the sender timed out or died).
        lost = SayCommand(
            id="cmd-1", call_id="call-once", reply_to=f"{redis_namespace}reply:gone", text="Hi."
        )
        await control.client.publish(command_channel(redis_namespace, "a"), encode(lost))
        frame = await old.recv()
        assert (frame["response_type"], frame["content"]) == ("agent_interrupt", "Hi.")

        # Retried on the same node: answered from the record, nothing spoken again.
        again = await control.say("call-once", "Hi.", command_id="cmd-1")
        assert again.ok
        assert again.node == "a"
        await _no_interrupt(old)

        # The call moves to node b; the same command id is retried there.
        async with retell(b.ws_url, "call-once") as new:
            await begin(new)
            await old.closed()
            retried = await control.say("call-once", "Hi.", command_id="cmd-1")
            assert retried.ok
            assert retried.node == "a"  # the outcome recorded where it acted
            await _no_interrupt(new)
            # A new command id is a new command: it is carried out, on b.
            fresh = await control.say("call-once", "Hello again.")
            assert fresh.node == "b"
            frame = await new.recv()
            assert frame["content"] == "Hello again."
    await control.aclose()


async def test_a_session_no_longer_serving_the_call_answers_not_here(
    redis_server_url: str, redis_namespace: str
) -> None:
    """A node whose session for the call is fenced (or closed) does not act on it and
    does not record the command: the new owner may still carry it out."""
    control = CallControl.from_url(redis_server_url, namespace=redis_namespace, move_wait_s=30)
    async with (
        node(EchoAgent(), redis_server_url, redis_namespace, "a") as a,
        retell(a.ws_url, "call-fenced") as peer,
    ):
        await begin(peer)
        session = a.app.node.sessions["call-fenced"]
        session.closed = True  # the instant between its socket closing and its removal
        try:
            pubsub = control.client.pubsub(ignore_subscribe_messages=True)
            await pubsub.subscribe(f"{redis_namespace}reply:x")
            command = SayCommand(
                id="cmd-f", call_id="call-fenced", reply_to=f"{redis_namespace}reply:x", text="-"
            )
            await control.client.publish(command_channel(redis_namespace, "a"), encode(command))
            async with asyncio.timeout(10):
                while (message := await pubsub.get_message(timeout=1.0)) is None:
                    pass
            reply = msgspec.json.decode(message["data"], type=Reply)
            assert (reply.ok, reply.error) == (False, "not_here")
            assert await control.client.exists(f"{redis_namespace}command:cmd-f") == 0
            await pubsub.aclose()  # type: ignore[no-untyped-call]
        finally:
            session.closed = False
    await control.aclose()


async def test_calls_say_run_twice_with_one_id_speaks_once(
    redis_server_url: str, redis_namespace: str
) -> None:
    target = ["--redis-url", redis_server_url, "--namespace", redis_namespace]
    argv = ["calls", "say", "call-cli", "One moment.", "--id", "op-7", *target]
    async with (
        node(EchoAgent(), redis_server_url, redis_namespace, "a") as a,
        retell(a.ws_url, "call-cli") as peer,
    ):
        await begin(peer)
        for _ in range(2):  # an operator's script retried after a timeout
            result = await asyncio.to_thread(CliRunner().invoke, app, argv)
            assert result.exit_code == 0, result.output
            assert "node a" in result.output
        frame = await peer.recv()
        assert frame["content"] == "One moment."
        await _no_interrupt(peer)


async def test_a_command_whose_node_died_while_acting_is_never_carried_out_again(
    redis_server_url: str, redis_namespace: str
) -> None:
    """At most once: the id was claimed by a node that died before recording the outcome,
    so nobody knows whether the caller heard it; the command is not sent again."""
    control = CallControl.from_url(redis_server_url, namespace=redis_namespace, move_wait_s=0.5)
    async with (
        node(EchoAgent(), redis_server_url, redis_namespace, "a") as a,
        retell(a.ws_url, "call-doubt") as peer,
    ):
        await begin(peer)
        assert await control.ledger.begin("cmd-d", "node-that-died") is None
        with pytest.raises(CommandFailed, match="died while carrying it out") as failed:
            await control.say("call-doubt", "Hello?", command_id="cmd-d")
        assert failed.value.retriable
        await _no_interrupt(peer)
        reply = await control.say("call-doubt", "Hello?")  # a new id is a new command
        assert reply.node == "a"
    await control.aclose()

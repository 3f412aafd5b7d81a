"""The call socket end to end: a real server, a real WebSocket client playing Retell."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from switchboard.state.memory import MemoryCallStore
from tests.fixtures.agents import (
    DetailsAgent,
    EchoAgent,
    FailingAgent,
    GatedAgent,
    SilentAgent,
    WrongTypeAgent,
)
from tests.fixtures.conditions import eventually
from tests.fixtures.server import retell, spoken

pytestmark = pytest.mark.integration

FALLBACK = "Sorry, I'm having a little trouble. Could you say that again?"


def responses(frames: list[dict[str, Any]], response_id: int) -> list[dict[str, Any]]:
    return [
        f
        for f in frames
        if f.get("response_type") == "response" and f.get("response_id") == response_id
    ]


async def test_config_is_first_then_the_greeting_completes_response_zero(serve: Any) -> None:
    async with serve(EchoAgent(), call_details=False) as srv, retell(srv.ws_url, "c1") as peer:
        config = await peer.recv()
        assert config == {
            "response_type": "config",
            "config": {
                "auto_reconnect": True,
                "call_details": False,
                "transcript_with_tool_calls": False,
            },
        }
        frames = await peer.complete(0)
        assert spoken(frames, 0) == "Hello from the clinic."
        assert all(isinstance(f["content"], str) for f in responses(frames, 0))


async def test_response_required_streams_chunks_then_completes(serve: Any) -> None:
    async with serve(EchoAgent(), call_details=False) as srv, retell(srv.ws_url, "c2") as peer:
        await peer.complete(0)
        await peer.send(
            interaction_type="update_only",
            transcript=[{"role": "user", "content": "what are", "words": []}],
            turntaking="user_turn",
        )
        await peer.request(1, "what are your hours")
        frames = await peer.complete(1)
        assert spoken(frames, 1) == "You said: what are your hours (turn 1)"
        chunks = responses(frames, 1)
        assert [f["content_complete"] for f in chunks] == [False] * (len(chunks) - 1) + [True]
        # update_only is never answered: nothing but id 1 frames arrived.
        assert {f["response_id"] for f in frames} == {1}


async def test_reminder_is_its_own_turn_kind(serve: Any) -> None:
    agent = EchoAgent()
    async with serve(agent, call_details=False) as srv, retell(srv.ws_url, "c3") as peer:
        await peer.complete(0)
        await peer.request(1, "hello", kind="reminder_required")
        frames = await peer.complete(1)
        assert spoken(frames, 1) == "Are you still there?"
        assert agent.turns_seen[-1].kind.value == "reminder"


async def test_ping_is_echoed_while_the_agent_is_busy(serve: Any) -> None:
    agent = GatedAgent()
    async with serve(agent, call_details=False) as srv, retell(srv.ws_url, "c4") as peer:
        await peer.complete(0)
        await peer.request(1, "think hard")
        await asyncio.wait_for(agent.started_event(1).wait(), 10)
        await peer.send(interaction_type="ping_pong", timestamp=1_700_000_000_123)
        frames = await peer.recv_until(lambda f: f["response_type"] == "ping_pong")
        assert frames[-1] == {"response_type": "ping_pong", "timestamp": 1_700_000_000_123}
        assert not agent.release.is_set()  # answered while the generation was still blocked
        agent.release.set()
        await peer.complete(1)


async def test_superseded_response_sends_no_more_frames_and_is_cancelled(serve: Any) -> None:
    agent = GatedAgent()
    async with serve(agent, call_details=False) as srv, retell(srv.ws_url, "c5") as peer:
        await peer.complete(0)
        await peer.request(1, "first")
        await peer.recv_until(lambda f: f.get("response_id") == 1)
        await asyncio.wait_for(agent.started_event(1).wait(), 10)
        before = len(peer.frames)
        await peer.request(2, "first and more")
        await asyncio.wait_for(agent.cancelled_event.wait(), 10)
        assert agent.cancelled == [1]
        await asyncio.wait_for(agent.started_event(2).wait(), 10)
        agent.release.set()
        frames = await peer.complete(2)
        after = peer.frames[before:]
        assert not responses(after, 1), "a frame for the superseded id was sent"
        assert spoken(frames, 2) == "Thinking about 2.Answer 2."
        assert not any(f.get("content_complete") for f in responses(peer.frames, 1))


async def test_agent_error_yields_spoken_fallback_and_discards_turn_state(serve: Any) -> None:
    store = MemoryCallStore()
    async with (
        serve(FailingAgent(), store=store, call_details=False) as srv,
        retell(srv.ws_url, "c6") as peer,
    ):
        await peer.complete(0)
        await peer.request(1, "book me in")
        frames = await peer.complete(1)
        assert spoken(frames, 1) == FALLBACK
        state = await store.load("c6")
        assert state is not None
        assert "poisoned" not in state.state


async def test_agent_error_after_speaking_still_completes(serve: Any) -> None:
    async with serve(FailingAgent(), call_details=False) as srv, retell(srv.ws_url, "c7") as peer:
        await peer.complete(0)
        await peer.request(1, "late failure")
        frames = await peer.complete(1)
        assert spoken(frames, 1) == "Let me check."
        assert responses(frames, 1)[-1]["content_complete"] is True


async def test_no_first_chunk_in_time_yields_fallback_and_cancels_agent(serve: Any) -> None:
    agent = SilentAgent()
    async with (
        serve(agent, call_details=False, first_chunk_timeout_ms=100) as srv,
        retell(srv.ws_url, "c8") as peer,
    ):
        await peer.complete(0)
        await peer.request(1, "hello?")
        frames = await peer.complete(1)
        assert spoken(frames, 1) == FALLBACK
        await asyncio.wait_for(agent.cancelled.wait(), 10)


async def test_actions_ride_on_the_final_frame(serve: Any) -> None:
    async with serve(EchoAgent(), call_details=False) as srv, retell(srv.ws_url, "c9") as peer:
        await peer.complete(0)
        await peer.request(1, "bye now")
        final = (await peer.complete(1))[-1]
        assert final["end_call"] is True
        assert "transfer_number" not in final
        await peer.request(2, "a human please")
        final = (await peer.complete(2))[-1]
        assert final["transfer_number"] == "+14155550100"
        assert final["show_transferee_as_caller"] is True
        assert "end_call" not in final
        await peer.request(3, "menu")
        final = (await peer.complete(3))[-1]
        assert final["digit_to_press"] == "1"
        await peer.request(4, "be careful")
        frames = await peer.complete(4)
        assert all(f["no_interruption_allowed"] is True for f in responses(frames, 4))


async def test_side_frames_for_tools_interrupts_updates_and_metadata(serve: Any) -> None:
    async with serve(EchoAgent(), call_details=False) as srv, retell(srv.ws_url, "c10") as peer:
        await peer.complete(0)
        await peer.request(1, "do everything")
        frames = await peer.complete(1)
        kinds = [f["response_type"] for f in frames]
        assert kinds[:5] == [
            "tool_call_invocation",
            "tool_call_result",
            "update_agent",
            "metadata",
            "agent_interrupt",
        ]
        assert frames[0] == {
            "response_type": "tool_call_invocation",
            "tool_call_id": "t1",
            "name": "lookup",
            "arguments": '{"q": 1}',
        }
        assert frames[1]["successful"] is True
        assert frames[2]["agent_config"] == {"responsiveness": 0.5, "reminder_max_count": 2}
        assert frames[3]["metadata"] == {"screen": "booking"}
        assert frames[4]["interrupt_id"] == 1
        assert frames[4]["content"] == "One moment please."
        assert frames[4]["content_complete"] is True
        assert spoken(frames, 1) == "Done."


async def test_greeting_waits_for_call_details(serve: Any) -> None:
    async with serve(DetailsAgent()) as srv, retell(srv.ws_url, "c11") as peer:
        config = await peer.recv()
        assert config["config"]["call_details"] is True
        await peer.send(
            interaction_type="call_details",
            call={
                "call_id": "c11",
                "call_type": "phone_call",
                "retell_llm_dynamic_variables": {"customer_name": "Ada"},
            },
        )
        frames = await peer.complete(0)
        assert spoken(frames, 0) == "Hi Ada, thanks for calling."


async def test_greeting_goes_ahead_without_call_details_after_the_timeout(serve: Any) -> None:
    async with (
        serve(DetailsAgent(), call_details_timeout_ms=50) as srv,
        retell(srv.ws_url, "c12") as peer,
    ):
        frames = await peer.complete(0)
        assert spoken(frames, 0) == "Hi there, thanks for calling."


async def test_reconnect_resumes_without_a_second_greeting(serve: Any) -> None:
    async with serve(EchoAgent(), call_details=False) as srv:
        async with retell(srv.ws_url, "c13") as peer:
            await peer.complete(0)
            await peer.request(1, "one")
            assert spoken(await peer.complete(1), 1).endswith("(turn 1)")
        async with retell(srv.ws_url, "c13") as peer:
            frames = await peer.complete(0)
            assert frames[0]["response_type"] == "config"
            assert responses(frames, 0) == [
                {
                    "response_type": "response",
                    "response_id": 0,
                    "content": "",
                    "content_complete": True,
                }
            ]
            await peer.request(5, "two")
            assert spoken(await peer.complete(5), 5).endswith("(turn 2)")


async def test_a_newer_socket_for_the_same_call_drops_the_older_one(serve: Any) -> None:
    async with serve(EchoAgent(), call_details=False) as srv, retell(srv.ws_url, "c14") as old:
        await old.complete(0)
        async with retell(srv.ws_url, "c14") as new:
            await new.complete(0)
            with pytest.raises(ConnectionClosed) as closed:
                await old.recv()
            assert closed.value.rcvd is None  # dropped without a close frame: 1006
            await new.request(1, "still here")
            assert "(turn 1)" in spoken(await new.complete(1), 1)


async def test_disconnect_cancels_the_generation_and_frees_the_slot(serve: Any) -> None:
    agent = GatedAgent()
    async with serve(agent, call_details=False) as srv:
        async with retell(srv.ws_url, "c15") as peer:
            await peer.complete(0)
            await peer.request(1, "wait")
            await asyncio.wait_for(agent.started_event(1).wait(), 10)
        await asyncio.wait_for(agent.cancelled_event.wait(), 10)
        node = srv.app.node
        await eventually(lambda: node.active == 0 and not node.sessions)


async def test_a_value_that_is_not_text_never_reaches_the_wire(serve: Any) -> None:
    async with (
        serve(WrongTypeAgent(), call_details=False) as srv,
        retell(srv.ws_url, "c16") as peer,
    ):
        await peer.complete(0)
        await peer.request(1, "hello")
        frames = await peer.complete(1)
        assert spoken(frames, 1) == FALLBACK
        assert all(isinstance(f["content"], str) for f in responses(frames, 1))

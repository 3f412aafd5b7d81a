"""``CallSession`` as the shell around the turn's decisions, on an in-memory transport:
what it sends, in which order, and what it stops sending. No socket, no server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from hypothesis import given
from hypothesis import strategies as st

from switchboard.agents.base import Action, Agent, Turn, TurnKind
from switchboard.state.memory import MemoryCallStore
from tests.fixtures.agents import EchoAgent, FailingAgent, GatedAgent
from tests.fixtures.memory_transport import memory_call

FALLBACK = "Sorry, I'm having a little trouble. Could you say that again?"


async def test_config_then_the_greeting_on_a_fresh_call() -> None:
    async with memory_call(EchoAgent()) as call:
        await call.transport.complete(0)
        assert call.transport.frames[0]["response_type"] == "config"
        assert call.spoken(0) == "Hello from the clinic."


async def test_superseded_response_sends_no_more_frames() -> None:
    agent = GatedAgent()
    async with memory_call(agent) as call:
        await call.transport.complete(0)
        call.request(1, "first")
        await agent.started_event(1).wait()
        call.request(2, "second")
        sent_for_1 = len(call.transport.of(1))
        await agent.cancelled_event.wait()
        await agent.started_event(2).wait()
        agent.release.set()
        await call.transport.complete(2)
        assert agent.cancelled == [1]
        assert len(call.transport.of(1)) == sent_for_1  # nothing for id 1 after id 2 was read
        assert call.spoken(2) == "Thinking about 2.Answer 2."


async def test_an_id_that_went_backwards_closes_the_open_one_before_anything_else() -> None:
    agent = GatedAgent()
    async with memory_call(agent) as call:
        await call.transport.complete(0)
        call.request(5, "five")
        await agent.started_event(5).wait()
        call.request(4, "four")
        await agent.started_event(4).wait()
        agent.release.set()
        await call.transport.complete(4)
        after = call.transport.frames[call.transport.frames.index(call.transport.of(5)[-1]) :]
        assert after[0] == {
            "response_type": "response",
            "response_id": 5,
            "content": "",
            "content_complete": True,
        }
        assert all(f["response_id"] == 4 for f in after[1:])


async def test_a_completed_request_resent_after_a_reconnect_is_answered_from_the_saved_reply() -> (
    None
):
    store = MemoryCallStore()
    agent = EchoAgent()
    async with memory_call(agent, "c", store) as call:
        await call.transport.complete(0)
        call.request(1, "bye")
        first = await call.transport.complete(1)
    calls_before = len(agent.turns_seen)
    async with memory_call(agent, "c", store) as again:
        await again.transport.complete(0)
        assert again.spoken(0) == ""  # resumed: no second greeting
        again.request(1, "bye")
        replayed = await again.transport.complete(1)
    assert len(agent.turns_seen) == calls_before  # the agent was not asked twice
    assert "".join(f["content"] for f in replayed) == "".join(f["content"] for f in first)
    assert replayed[-1]["end_call"] is True


async def test_a_barge_in_on_the_greeting_means_the_call_is_never_greeted_again() -> None:
    store = MemoryCallStore()
    agent = GatedAgent()
    async with memory_call(EchoAgent("Welcome, this is a long greeting."), "g", store) as call:
        await call.transport.complete(0)
    # A second call whose greeting is cut short by the caller's first request.
    async with memory_call(agent, "g2", store) as call:
        call.request(1, "hello")
        await agent.started_event(1).wait()
        agent.release.set()
        await call.transport.complete(1)
        assert call.session.snapshot() is not None
        snapshot = call.session.snapshot()
        assert snapshot is not None
        assert snapshot.greeted


async def test_an_agent_error_ends_the_turn_with_the_spoken_fallback() -> None:
    async with memory_call(FailingAgent()) as call:
        await call.transport.complete(0)
        call.request(1, "hello")
        await call.transport.complete(1)
        assert call.spoken(1) == FALLBACK


async def test_actions_ride_on_the_final_frame_after_the_words() -> None:
    async with memory_call(EchoAgent()) as call:
        await call.transport.complete(0)
        call.request(1, "I want a human")
        frames = await call.transport.complete(1)
        assert [f["content_complete"] for f in frames] == [False, True]
        assert frames[-1]["transfer_number"] == "+14155550100"
        assert frames[-1]["show_transferee_as_caller"] is True


async def test_side_frames_go_out_in_the_order_the_agent_yielded_them() -> None:
    async with memory_call(EchoAgent()) as call:
        await call.transport.complete(0)
        start = len(call.transport.frames)
        call.request(1, "tell me everything")
        await call.transport.complete(1)
        kinds = [f["response_type"] for f in call.transport.frames[start:]]
        assert kinds == [
            "tool_call_invocation",
            "tool_call_result",
            "update_agent",
            "metadata",
            "agent_interrupt",
            "response",
            "response",
        ]
        assert call.transport.frames[start + 4]["interrupt_id"] == 1


async def test_a_ping_is_answered_inline_while_a_turn_is_open() -> None:
    agent = GatedAgent()
    async with memory_call(agent) as call:
        await call.transport.complete(0)
        call.request(1, "first")
        await agent.started_event(1).wait()
        call.send(interaction_type="ping_pong", timestamp=123)
        assert call.transport.frames[-1] == {"response_type": "ping_pong", "timestamp": 123}
        agent.release.set()
        await call.transport.complete(1)


class ChunkyAgent(Agent):
    """Three chunks with a loop turn between each: room for a newer request to land."""

    async def respond(self, turn: Turn) -> AsyncIterator[str | Action]:
        if turn.kind is TurnKind.GREETING:
            yield "Hi."
            return
        for part in ("one ", "two ", "three"):
            yield part
            await asyncio.sleep(0)


REQUESTS = st.lists(
    st.tuples(
        st.integers(1, 5),
        st.sampled_from(["response_required", "reminder_required"]),
        st.integers(0, 4),  # loop turns before the next request is read
    ),
    min_size=1,
    max_size=8,
)


@given(REQUESTS)
def test_after_a_request_is_read_only_its_id_is_answered(
    steps: list[tuple[int, str, int]],
) -> None:
    """Invariant 2 over interleavings: once a request is read, every response frame is for
    its id, except the empty close of an id that a lower one superseded (ids went
    backwards; the newer generation's task sends it first). The last request completes."""
    asyncio.run(_interleaved(steps))


async def _interleaved(steps: list[tuple[int, str, int]]) -> None:
    async with memory_call(ChunkyAgent()) as call:
        await call.transport.complete(0)
        windows: list[tuple[int, int, int | None]] = []
        for rid, kind, pause in steps:
            current = call.session.current
            open_id = current.response_id if current and not current.completed else None
            windows.append((len(call.transport.frames), rid, open_id))
            call.request(rid, "hello", kind)
            for _ in range(pause):
                await asyncio.sleep(0)
        last = steps[-1][0]
        await call.transport.complete(last)
        frames = call.transport.frames
        closed_first: set[int] = set()  # open ids that a lower one superseded
        for k, (start, rid, open_id) in enumerate(windows):
            if open_id is not None and rid < open_id:
                closed_first.add(open_id)
            end = windows[k + 1][0] if k + 1 < len(windows) else len(frames)
            for frame in frames[start:end]:
                if frame.get("response_type") != "response" or frame["response_id"] == rid:
                    continue
                assert frame["response_id"] in closed_first
                assert frame == {
                    "response_type": "response",
                    "response_id": frame["response_id"],
                    "content": "",
                    "content_complete": True,
                }

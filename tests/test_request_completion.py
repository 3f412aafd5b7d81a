"""Every request id Retell may be waiting on ends with ``content_complete``: undecodable
request frames and ids that go backwards (docs/decisions.md)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.fixtures.agents import EchoAgent, GatedAgent
from tests.fixtures.server import retell, spoken

pytestmark = pytest.mark.integration

FALLBACK = "Sorry, I'm having a little trouble. Could you say that again?"


def completes(frames: list[dict[str, Any]], response_id: int) -> list[dict[str, Any]]:
    return [
        f
        for f in frames
        if f.get("response_type") == "response"
        and f.get("response_id") == response_id
        and f.get("content_complete") is True
    ]


async def test_an_undecodable_request_gets_the_fallback_and_completes(serve: Any) -> None:
    agent = EchoAgent()
    async with serve(agent, call_details=False) as srv, retell(srv.ws_url, "lone") as peer:
        await peer.complete(0)
        # A lone surrogate escape: not valid JSON text, yet the id is plain to read.
        await peer.send_raw(
            '{"interaction_type":"response_required","response_id":3,'
            '"transcript":[{"role":"user","content":"caf\\ud800"}]}'
        )
        frames = await peer.complete(3)
        assert spoken(frames, 3) == FALLBACK
        assert len(agent.turns_seen) == 1  # the agent never saw the broken turn (only the greeting)
        # The call goes on normally.
        await peer.request(4, "hello again")
        assert spoken(await peer.complete(4), 4) == "You said: hello again (turn 1)"


async def test_an_undecodable_reminder_gets_the_fallback_too(serve: Any) -> None:
    async with serve(EchoAgent(), call_details=False) as srv, retell(srv.ws_url, "rem") as peer:
        await peer.complete(0)
        await peer.send_raw(
            '{"interaction_type":"reminder_required","response_id":2,"transcript":['
        )
        assert spoken(await peer.complete(2), 2) == FALLBACK


async def test_a_lower_id_closes_the_open_one_then_is_answered(serve: Any) -> None:
    agent = GatedAgent()
    async with serve(agent, call_details=False) as srv, retell(srv.ws_url, "back") as peer:
        await peer.complete(0)
        await peer.request(50, "first")
        await asyncio.wait_for(agent.started_event(50).wait(), 10)
        await peer.request(40, "out of order")
        await asyncio.wait_for(agent.started_event(40).wait(), 10)
        agent.release.set()
        await peer.complete(40)
        # 50 was open when 40 arrived: it is closed (empty, complete) before any frame of 40,
        # so whichever id Retell is listening to ends; the other's frames it drops.
        frames = [f for f in peer.frames if f.get("response_type") == "response"]
        closed_50 = completes(frames, 50)
        assert closed_50 == [
            {
                "response_type": "response",
                "response_id": 50,
                "content": "",
                "content_complete": True,
            }
        ]
        first_40 = next(i for i, f in enumerate(frames) if f["response_id"] == 40)
        assert frames.index(closed_50[0]) < first_40
        assert agent.cancelled == [50]
        assert spoken(frames, 40) == "Thinking about 40.Answer 40."
        after_close = frames[frames.index(closed_50[0]) + 1 :]
        assert {f["response_id"] for f in after_close} == {40}

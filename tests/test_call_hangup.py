"""A caller who hangs up leaves nothing behind: no task, no slot, no upstream LLM stream."""

from __future__ import annotations

from typing import Any

from switchboard.agents.openai_agent import OpenAIAgent
from switchboard.testing.fake_llm import FakeLLMConfig, FakeLLMServer
from tests.fixtures.conditions import eventually
from tests.fixtures.server import retell


async def test_hangup_mid_stream_closes_the_llm_stream_and_frees_the_slot(
    serve: Any, fake_llm: FakeLLMServer
) -> None:
    agent = OpenAIAgent(model="m", system_prompt="Be brief.", greeting="Hello.", max_retries=0)
    fake_llm.config = FakeLLMConfig(reply="We are open from nine to five. " * 50, token_ms=20)
    async with serve(agent, call_details=False) as srv:
        async with retell(srv.ws_url, "hangup") as peer:
            await peer.complete(0)
            await peer.request(1, "Tell me everything about your hours.")
            await peer.recv_until(lambda f: f.get("response_id") == 1 and bool(f.get("content")))
        await fake_llm.stats.wait_for(lambda s: s.closed_early == 1, 10)
        node = srv.app.node
        await eventually(lambda: node.active == 0 and not node.sessions)
    assert [stream.outcome for stream in fake_llm.stats.streams] == ["closed_early"]

"""The cache through the real server, as Retell sees it, with the OpenAI agent and fake LLM."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from switchboard.agents.openai_agent import OpenAIAgent
from switchboard.cache.agent import CachedAgent
from switchboard.cache.memory import MemoryResponseCache
from switchboard.cache.policy import CachePolicy
from switchboard.events.buses.memory import MemoryBus
from switchboard.events.codec import decode
from switchboard.events.types import TurnCompleted
from switchboard.testing.fake_llm import FakeLLMConfig, FakeLLMServer
from tests.fixtures.conditions import eventually
from tests.fixtures.server import retell, spoken

pytestmark = pytest.mark.integration

TIMEOUT = 10.0
REPLY = "We are open from 8 AM to 6 PM. Is there anything else?"


def cached_openai(**policy: Any) -> CachedAgent:
    agent = OpenAIAgent(model="m", system_prompt="Be brief.", greeting="Hello.", max_retries=0)
    return CachedAgent(
        agent, MemoryResponseCache(), CachePolicy(**{"semantic": False, **policy}), digest="d1"
    )


async def test_hit_is_spoken_like_the_agent_with_content_complete_and_counted(
    serve: Any, fake_llm: FakeLLMServer
) -> None:
    fake_llm.config = FakeLLMConfig(reply=REPLY)
    agent = cached_openai()
    async with serve(agent, call_details=False) as srv:
        async with retell(srv.ws_url, "call-a") as peer:
            await peer.complete(0)
            await peer.request(1, "What are your hours?")
            first = await peer.complete(1)
        await agent.flush()
        async with retell(srv.ws_url, "call-b") as peer:
            await peer.complete(0)
            await peer.request(1, "what are your hours")
            second = await peer.complete(1)
        async with httpx.AsyncClient(trust_env=False) as client:
            metrics = (await client.get(f"{srv.http_url}/metrics")).text
    assert spoken(second, 1) == spoken(first, 1) == REPLY
    content = [f["content"] for f in second if f.get("content")]
    assert content == [f["content"] for f in first if f.get("content")]
    assert second[-1]["content_complete"] is True
    assert fake_llm.stats.requests == 1
    assert 'switchboard_cache_hits_total{tier="exact"} 1.0' in metrics
    assert 'switchboard_cache_misses_total{tier="exact"} 1.0' in metrics
    assert 'switchboard_cache_hit_first_chunk_seconds_count{tier="exact"} 1.0' in metrics


async def test_barged_in_reply_is_not_stored(serve: Any, fake_llm: FakeLLMServer) -> None:
    fake_llm.config = FakeLLMConfig(reply=REPLY, token_ms=20, tokens=1000)
    agent = cached_openai()
    async with serve(agent, call_details=False) as srv, retell(srv.ws_url, "llm-1") as peer:
        await peer.complete(0)
        await peer.request(1, "What are your hours?")
        await peer.recv_until(lambda f: f.get("response_id") == 1 and bool(f.get("content")))
        await peer.request(2, "Sorry, where are you? [fake: tokens=4 token_ms=0]")
        await peer.complete(2)
        await fake_llm.stats.wait_for(lambda s: s.closed_early == 1, TIMEOUT)
        await agent.flush()
        fake_llm.config = FakeLLMConfig(reply=REPLY)
        await peer.request(3, "What are your hours?")
        frames = await peer.complete(3)
    assert spoken(frames, 3) == REPLY
    assert fake_llm.stats.requests == 3  # the superseded reply was never stored
    assert agent.metrics.not_stored.labels("cancelled")._value.get() == 1


def test_metrics_url_follows_the_socket_url() -> None:
    from switchboard.sim.server_metrics import metrics_url

    assert metrics_url("ws://127.0.0.1:8080/llm-websocket") == "http://127.0.0.1:8080/metrics"
    assert metrics_url("wss://host.example/llm-websocket/s3cret") == "https://host.example/metrics"


async def test_simulator_report_reads_the_hit_counts_from_metrics(
    serve: Any, fake_llm: FakeLLMServer
) -> None:
    import asyncio

    from switchboard.sim.server_metrics import cache_counters, cache_text

    fake_llm.config = FakeLLMConfig(reply=REPLY)
    agent = cached_openai()
    async with serve(agent, call_details=False) as srv:
        for call_id in ("c1", "c2", "c3"):
            async with retell(srv.ws_url, call_id) as peer:
                await peer.complete(0)
                await peer.request(1, "What are your hours?")
                await peer.complete(1)
            await agent.flush()
        counters = await asyncio.to_thread(cache_counters, f"{srv.http_url}/metrics")
    assert counters["hits:exact"] == 2
    assert counters["misses:exact"] == 1
    assert counters["hit_rate"] == 2 / 3
    assert "hits exact 2" in cache_text(counters)


def test_no_metrics_endpoint_means_no_counters() -> None:
    from switchboard.sim.server_metrics import cache_counters
    from tests.fixtures.ports import free_port

    assert cache_counters(f"http://127.0.0.1:{free_port()}/metrics", timeout_s=1) == {}


async def test_a_hit_is_recorded_as_such_in_the_turn_event(
    serve: Any, fake_llm: FakeLLMServer, tmp_path: Any
) -> None:
    fake_llm.config = FakeLLMConfig(reply=REPLY)
    agent = cached_openai()
    settings = {"call_details": False, "bus_url": "memory://", "outbox_dir": tmp_path}
    async with serve(agent, **settings) as srv:
        outbox = srv.app.node.outbox
        assert isinstance(outbox.bus, MemoryBus)

        def turns() -> list[TurnCompleted]:
            events = [decode(m).data for m in outbox.bus.log]
            return [e for e in events if isinstance(e, TurnCompleted) and e.kind == "response"]

        for call_id in ("ev-a", "ev-b"):
            async with retell(srv.ws_url, call_id) as peer:
                await peer.complete(0)
                await peer.request(1, "What are your hours?")
                await peer.complete(1)
            await agent.flush()
        await eventually(lambda: len(turns()) == 2)
    assert [t.cache_hit for t in turns()] == [False, True]
    assert [t.reply for t in turns()] == [REPLY, REPLY]

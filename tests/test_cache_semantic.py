"""The semantic tier: MiniLM embeddings, the in-process index, guards, and the LLM race."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import structlog.testing

from switchboard.agents.base import Agent
from switchboard.agents.openai_agent import OpenAIAgent
from switchboard.cache.agent import CachedAgent
from switchboard.cache.base import ResponseCache
from switchboard.cache.embedding import MAX_TOKENS, Embedder, EmbeddingUnavailable, Vector
from switchboard.cache.memory import MemoryResponseCache
from switchboard.cache.policy import CachePolicy
from switchboard.cache.redis import RedisResponseCache
from switchboard.testing.fake_llm import FakeLLMConfig, FakeLLMServer
from tests.fixtures.conditions import eventually
from tests.test_cache_agent import CountingAgent, say, turn

TIMEOUT = 10.0


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


class RecordingEmbedder(Embedder):
    """The real model, noting when it is asked (to check what runs before what)."""

    def __init__(self, real: Embedder, log: list[str]) -> None:
        self.__dict__.update(real.__dict__)
        self.log = log

    def embed(self, text: str) -> Vector:
        self.log.append("embed")
        return super().embed(text)


async def semantic(
    inner: Agent, cache: ResponseCache, embedder: Embedder, digest: str = "v1"
) -> CachedAgent:
    agent = CachedAgent(inner, cache, CachePolicy(semantic=True), digest=digest, embedder=embedder)
    await agent.prepare()
    return agent


async def asked_while_the_agent_waits(
    agent: CachedAgent, inner: CountingAgent, line: str, guard: str
) -> None:
    """Ask ``line`` with the agent held until the lookup has refused, so the lookup decides."""
    inner.gate = asyncio.Event()
    asking = asyncio.create_task(say(agent, turn(line)))
    await eventually(lambda: agent.metrics.refusals.labels(guard)._value.get() == 1)
    inner.gate.set()
    await asyncio.wait_for(asking, TIMEOUT)
    assert agent.metrics.hits.labels("semantic")._value.get() == 0


async def test_paraphrase_is_served_and_the_agent_request_is_closed(embedder: Embedder) -> None:
    inner = CountingAgent()
    agent = await semantic(inner, MemoryResponseCache(), embedder)
    first, _ = await say(agent, turn("Do you take walk-ins?"))
    await agent.flush()
    inner.gate = asyncio.Event()  # the agent would now never answer: only the cache can
    inner.entered.clear()
    second, _ = await asyncio.wait_for(say(agent, turn("Do you accept walk-ins?")), TIMEOUT)
    assert second == first
    assert inner.calls == 2  # the request was made (in parallel) ...
    assert inner.closed == 2  # ... and closed when the cache answered
    assert agent.metrics.hits.labels("semantic")._value.get() == 1


async def test_opposite_weekday_is_refused_by_its_guard(embedder: Embedder) -> None:
    inner = CountingAgent()
    agent = await semantic(inner, MemoryResponseCache(), embedder)
    await say(agent, turn("Are you open on Saturday?"))
    await agent.flush()
    await asked_while_the_agent_waits(agent, inner, "Are you open on Sunday?", "weekday")
    assert inner.calls == 2
    assert agent.metrics.hits.labels("semantic")._value.get() == 0


async def test_negated_line_is_refused(embedder: Embedder) -> None:
    inner = CountingAgent()
    agent = await semantic(inner, MemoryResponseCache(), embedder)
    await say(agent, turn("Is it open?"))
    await agent.flush()
    await asked_while_the_agent_waits(agent, inner, "Is it not open?", "negation")
    assert inner.calls == 2


async def test_a_contrast_no_guard_names_is_refused_by_the_content_check(
    embedder: Embedder,
) -> None:
    """The reported incident: "at the back" was served the answer to "at the front"."""
    inner = CountingAgent()
    agent = await semantic(inner, MemoryResponseCache(), embedder)
    await say(agent, turn("Is there parking at the front?"))
    await agent.flush()
    await asked_while_the_agent_waits(agent, inner, "Is there parking at the back?", "content")
    assert inner.calls == 2


async def test_semantic_candidates_are_only_compared_within_one_context(
    embedder: Embedder,
) -> None:
    inner = CountingAgent()
    agent = await semantic(inner, MemoryResponseCache(), embedder)
    await say(agent, turn("Do you take walk-ins?", agent_line="How can I help?"))
    await agent.flush()
    await say(agent, turn("Do you accept walk-ins?", agent_line="Anything else?"))
    assert inner.calls == 2


async def test_agent_request_starts_before_the_embedding(embedder: Embedder) -> None:
    order: list[str] = []

    class Noting(CountingAgent):
        async def respond(self, t: Any) -> Any:
            order.append("agent")
            async for item in super().respond(t):
                yield item

    agent = await semantic(Noting(), MemoryResponseCache(), RecordingEmbedder(embedder, order))
    await say(agent, turn("Where are you located?"))
    await agent.flush()  # stored with its vector: the context now has a candidate
    order.clear()
    await say(agent, turn("Is there parking?"))
    await agent.flush()
    assert order == ["agent", "embed"]  # and the lookup's vector is the one stored


async def test_nothing_is_embedded_before_the_reply_when_the_context_is_empty(
    embedder: Embedder,
) -> None:
    order: list[str] = []
    agent = await semantic(
        CountingAgent(), MemoryResponseCache(), RecordingEmbedder(embedder, order)
    )
    await say(agent, turn("Where are you located?"))
    assert order == []
    await agent.flush()
    assert order == ["embed"]  # once, for the stored entry, after the reply


async def test_llm_stream_is_closed_on_a_semantic_hit(
    embedder: Embedder, fake_llm: FakeLLMServer
) -> None:
    llm = OpenAIAgent(model="m", system_prompt="Be brief.", max_retries=0)
    agent = await semantic(llm, MemoryResponseCache(), embedder)
    try:
        fake_llm.config = FakeLLMConfig(reply="Yes, we take walk-ins until 5 PM.")
        first, _ = await say(agent, turn("Do you take walk-ins?"))
        await agent.flush()
        fake_llm.config = FakeLLMConfig(reply="never heard", ttft_ms=5000)
        second, _ = await asyncio.wait_for(say(agent, turn("Do you accept walk-ins?")), TIMEOUT)
        assert second == first
        await fake_llm.stats.wait_for(lambda s: s.closed_early == 1, TIMEOUT)
    finally:
        await agent.aclose()


async def test_vectors_in_redis_serve_another_node(
    embedder: Embedder, redis_server_url: str, redis_namespace: str
) -> None:
    def node() -> RedisResponseCache:
        return RedisResponseCache.from_url(
            redis_server_url, namespace=redis_namespace, timeout_ms=2000
        )

    one = await semantic(CountingAgent(), node(), embedder)
    first, _ = await say(one, turn("Is there any parking nearby?"))
    await one.flush()
    inner = CountingAgent()
    inner.gate = asyncio.Event()
    two = await semantic(inner, node(), embedder)  # loads the index from Redis
    second, _ = await asyncio.wait_for(say(two, turn("Is there parking nearby?")), TIMEOUT)
    assert second == first
    await one.cache.clear()
    await one.cache.close()
    await two.cache.close()


def test_huge_line_is_embedded_only_up_to_the_model_limit(embedder: Embedder) -> None:
    huge = "please tell me about your opening hours " * 5000
    assert embedder.tokens(huge) == MAX_TOKENS
    vector = embedder.embed(huge)
    assert vector.shape == (384,)
    assert abs(float(vector @ vector) - 1.0) < 1e-3


async def test_model_failing_to_load_disables_the_tier_with_one_log_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "model.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(EmbeddingUnavailable):
        Embedder(model=broken)
    import switchboard.cache.agent as module

    monkeypatch.setattr(module, "Embedder", lambda: Embedder(model=broken))
    inner = CountingAgent()
    agent = CachedAgent(inner, MemoryResponseCache(), CachePolicy(semantic=True), digest="v1")
    with structlog.testing.capture_logs() as logs:
        await agent.prepare()
        for _ in range(3):
            await say(agent, turn("Where are you?"))
            await agent.flush()
    disabled = [e for e in logs if "semantic cache tier disabled" in e["event"]]
    assert len(disabled) == 1
    assert "Protobuf" in disabled[0]["error"]
    assert inner.calls == 1  # the exact tier still works
    assert not agent.semantic_ready

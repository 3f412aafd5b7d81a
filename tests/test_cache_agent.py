"""CachedAgent: exact tier, voice-safety rules, single-flight, faults (memory and Redis)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from switchboard.agents.base import (
    Action,
    Agent,
    EndCall,
    NoCache,
    PressDigit,
    ToolCallFinished,
    ToolCallStarted,
    Transfer,
    Turn,
    TurnKind,
)
from switchboard.cache import keys
from switchboard.cache.agent import CachedAgent
from switchboard.cache.base import ResponseCache
from switchboard.cache.memory import MemoryResponseCache
from switchboard.cache.policy import CachePolicy
from switchboard.cache.redis import RedisResponseCache
from switchboard.protocol.inbound import Utterance
from tests.fixtures.conditions import eventually
from tests.fixtures.ports import free_port

GREETING = "Thanks for calling Maple Street Clinic. How can I help?"


class CountingAgent(Agent):
    """Answers in three chunks; keywords make it use a tool, act, or mark the turn."""

    def __init__(self) -> None:
        self.calls = 0
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()
        self.closed = 0

    async def respond(self, turn: Turn) -> AsyncIterator[str | Action]:
        self.calls += 1
        self.entered.set()
        try:
            if self.gate is not None:
                await self.gate.wait()
            text = turn.last_user_text.lower()
            if "book" in text:
                yield ToolCallStarted("t1", "book_appointment", "{}")
                yield ToolCallFinished("t1", "booked", True)
            if "bye" in text:
                yield "Goodbye!"
                yield EndCall()
                return
            if "human" in text:
                yield "Transferring you."
                yield Transfer("+14155550100")
                return
            if "menu" in text:
                yield PressDigit("1")
            if "secret" in text:
                yield NoCache()
            if "name please" in text:
                yield f"Of course, {turn.dynamic_variables.get('customer_name', 'friend')}. "
            yield "We are open "
            yield f"answer {self.calls} "
            yield "to your question."
        finally:
            self.closed += 1


def turn(
    line: str,
    agent_line: str = GREETING,
    kind: TurnKind = TurnKind.RESPONSE,
    variables: dict[str, str] | None = None,
    call: dict[str, Any] | None = None,
) -> Turn:
    transcript = (
        [Utterance("agent", agent_line), Utterance("user", line)]
        if agent_line
        else [Utterance("user", line)]
    )
    return Turn(
        call_id="c1",
        kind=kind,
        response_id=1,
        transcript=transcript,
        state={},
        call=call,
        dynamic_variables=variables or {},
    )


async def say(agent: Agent, t: Turn) -> tuple[list[str], list[Action]]:
    chunks: list[str] = []
    actions: list[Action] = []
    async for item in agent.respond(t):
        (chunks if isinstance(item, str) else actions).append(item)  # type: ignore[arg-type]
    return chunks, actions


@pytest.fixture(params=["memory", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[ResponseCache]:
    """The memory backend starts nothing; only the Redis one asks for the server."""
    cache: ResponseCache
    if request.param == "memory":
        cache = MemoryResponseCache()
    else:
        cache = RedisResponseCache.from_url(
            request.getfixturevalue("redis_server_url"),
            namespace=request.getfixturevalue("redis_namespace"),
            timeout_ms=2000,
        )
    yield cache
    await cache.clear()
    await cache.close()


def wrap(inner: Agent, cache: ResponseCache, digest: str = "v1", **policy: Any) -> CachedAgent:
    return CachedAgent(inner, cache, CachePolicy(**{"semantic": False, **policy}), digest=digest)


def hits(agent: CachedAgent, tier: str) -> float:
    return agent.metrics.hits.labels(tier)._value.get()


async def test_second_ask_is_replayed_in_the_original_chunks(backend: ResponseCache) -> None:
    inner = CountingAgent()
    agent = wrap(inner, backend)
    first, _ = await say(agent, turn("What are your opening hours?"))
    await agent.flush()
    second, _ = await say(agent, turn("What are your opening hours?"))
    assert second == first == ["We are open ", "answer 1 ", "to your question."]
    assert inner.calls == 1
    assert hits(agent, "exact") == 1


async def test_key_ignores_case_punctuation_and_fillers(backend: ResponseCache) -> None:
    inner = CountingAgent()
    agent = wrap(inner, backend)
    await say(agent, turn("What are your opening hours?"))
    await agent.flush()
    chunks, _ = await say(agent, turn("um, what are your OPENING hours"))
    assert inner.calls == 1
    assert "".join(chunks) == "We are open answer 1 to your question."


async def test_same_line_after_a_different_agent_line_is_a_miss(backend: ResponseCache) -> None:
    inner = CountingAgent()
    agent = wrap(inner, backend)
    await say(agent, turn("Yes, please.", agent_line="Shall I book you in for Tuesday?"))
    await agent.flush()
    await say(agent, turn("Yes, please.", agent_line="Would you like our address?"))
    assert inner.calls == 2


async def test_editing_the_agent_invalidates_its_entries(backend: ResponseCache) -> None:
    old = wrap(CountingAgent(), backend, digest="prompt-v1")
    await say(old, turn("Where are you?"))
    await old.flush()
    inner = CountingAgent()
    new = wrap(inner, backend, digest="prompt-v2")
    await say(new, turn("Where are you?"))
    assert inner.calls == 1


def test_agent_file_digest_changes_with_prompt_and_model(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("agent: openai\nmodel: m1\nsystem_prompt: be nice\n")
    first = keys.file_digest(path)
    path.write_text("agent: openai\nmodel: m1\nsystem_prompt: be nicer\n")
    second = keys.file_digest(path)
    monkeypatch.setenv("SWITCHBOARD_OPENAI_MODEL", "m2")
    third = keys.file_digest(path)
    assert len({first, second, third}) == 3


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("I'd like to book an appointment", "tool"),
        ("okay bye", "action"),
        ("can I talk to a human", "action"),
        ("main menu", "action"),
        ("tell me the secret", "agent_marked"),
    ],
)
async def test_turns_with_tools_actions_or_marked_are_never_stored(
    backend: ResponseCache, line: str, reason: str
) -> None:
    inner = CountingAgent()
    agent = wrap(inner, backend)
    await say(agent, turn(line))
    await agent.flush()
    await say(agent, turn(line))
    assert inner.calls == 2
    assert agent.metrics.not_stored.labels(reason)._value.get() == 1
    # The second ask skips the cache machinery (no wait, no embedding) for a while.
    assert agent.metrics.bypassed.labels("uncacheable_recently")._value.get() == 1
    assert await backend.count() == 0


async def test_marked_turn_does_not_leak_the_marker_to_the_session() -> None:
    agent = wrap(CountingAgent(), MemoryResponseCache())
    _, actions = await say(agent, turn("tell me the secret"))
    assert actions == []


@pytest.mark.parametrize(
    "line",
    [
        "My phone is 415 555 0100",
        "it's four one five five five five zero one zero zero",
        "my email is jo@example.com",
        "jordan at gmail dot com",
        "card 4111 1111 1111 1111",
        "My name is Jordan Lee",
        "Can I come on the 5th?",
    ],
)
async def test_caller_lines_with_personal_data_are_neither_looked_up_nor_stored(
    line: str,
) -> None:
    cache = MemoryResponseCache()
    inner = CountingAgent()
    agent = wrap(inner, cache)
    await say(agent, turn(line))
    await agent.flush()
    await say(agent, turn(line))
    assert inner.calls == 2
    assert await cache.count() == 0
    assert agent.metrics.bypassed.labels("personal_data")._value.get() == 2


async def test_reply_that_speaks_a_dynamic_variable_is_not_stored() -> None:
    cache = MemoryResponseCache()
    agent = wrap(CountingAgent(), cache)
    await say(agent, turn("your name please", variables={"customer_name": "Jordan"}))
    await agent.flush()
    assert await cache.count() == 0
    assert agent.metrics.not_stored.labels("call_data")._value.get() == 1


async def test_reply_that_speaks_call_data_is_not_stored() -> None:
    class Caller(CountingAgent):
        async def respond(self, turn: Turn) -> AsyncIterator[str | Action]:
            yield f"I see you are calling from {turn.call['from_number'] if turn.call else ''}."

    cache = MemoryResponseCache()
    agent = wrap(Caller(), cache)
    await say(agent, turn("where am I calling from", call={"from_number": "+14155550123"}))
    await agent.flush()
    assert await cache.count() == 0


async def test_agent_whose_prompt_reads_variables_is_not_cached_when_they_are_set() -> None:
    inner = CountingAgent()
    inner.cache_variables = ("customer_tier",)
    agent = wrap(inner, MemoryResponseCache())
    for _ in range(2):
        await say(agent, turn("what do I pay", variables={"customer_tier": "gold"}))
        await agent.flush()
    assert inner.calls == 2
    assert agent.metrics.bypassed.labels("dynamic_variables")._value.get() == 2


@pytest.mark.parametrize("kind", [TurnKind.GREETING, TurnKind.REMINDER])
async def test_greetings_and_reminders_are_not_cached(kind: TurnKind) -> None:
    inner = CountingAgent()
    agent = wrap(inner, MemoryResponseCache())
    for _ in range(2):
        await say(agent, turn("hello", kind=kind))
        await agent.flush()
    assert inner.calls == 2


async def test_personalised_greeting_context_is_shared_across_callers() -> None:
    inner = CountingAgent()
    agent = wrap(inner, MemoryResponseCache())
    await say(
        agent,
        turn("Where are you?", "Hi Jordan, how can I help?", variables={"customer_name": "Jordan"}),
    )
    await agent.flush()
    await say(
        agent, turn("Where are you?", "Hi Sam, how can I help?", variables={"customer_name": "Sam"})
    )
    assert inner.calls == 1


async def test_agent_line_with_digits_is_not_a_cacheable_context() -> None:
    inner = CountingAgent()
    agent = wrap(inner, MemoryResponseCache())
    for _ in range(2):
        await say(agent, turn("yes that's right", agent_line="Your number is 555 0100, right?"))
        await agent.flush()
    assert inner.calls == 2


async def test_superseded_generation_is_never_stored(backend: ResponseCache) -> None:
    inner = CountingAgent()
    agent = wrap(inner, backend)
    stream = agent.respond(turn("Where are you?"))
    assert await anext(stream) == "We are open "
    await stream.aclose()  # what the session does when a newer request supersedes this one
    await agent.flush()
    assert await backend.count() == 0
    assert agent.metrics.not_stored.labels("cancelled")._value.get() == 1
    assert inner.closed == 1


async def test_cancelled_generation_is_never_stored_and_closes_the_agent() -> None:
    cache = MemoryResponseCache()
    inner = CountingAgent()
    inner.gate = asyncio.Event()
    agent = wrap(inner, cache)
    task = asyncio.create_task(say(agent, turn("Where are you?")))
    await asyncio.wait_for(inner.entered.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await agent.flush()
    assert await cache.count() == 0
    assert inner.closed == 1


async def test_concurrent_misses_on_one_key_make_one_request(backend: ResponseCache) -> None:
    inner = CountingAgent()
    inner.gate = asyncio.Event()
    agent = wrap(inner, backend)
    tasks = [asyncio.create_task(say(agent, turn("Where are you?"))) for _ in range(5)]
    # Every lookup has missed, so each turn is now either the one generating or waiting on it.
    await eventually(lambda: agent.metrics.misses.labels("exact")._value.get() == 5)
    inner.gate.set()
    results = await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert inner.calls == 1
    assert all(chunks == results[0][0] for chunks, _ in results)
    assert hits(agent, "single_flight") == 4


async def test_waiters_fall_through_when_the_first_reply_is_not_storable() -> None:
    inner = CountingAgent()
    inner.gate = asyncio.Event()
    agent = wrap(inner, MemoryResponseCache())
    tasks = [asyncio.create_task(say(agent, turn("okay bye"))) for _ in range(3)]
    await eventually(lambda: agent.metrics.misses.labels("exact")._value.get() == 3)
    inner.gate.set()
    results = await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert inner.calls == 3
    assert all(actions == [EndCall()] for _, actions in results)


async def test_waiters_give_up_after_wait_ms_and_ask_the_agent() -> None:
    inner = CountingAgent()
    inner.gate = asyncio.Event()
    agent = wrap(inner, MemoryResponseCache(), wait_ms=1)
    leader = asyncio.create_task(say(agent, turn("Where are you?")))
    await asyncio.wait_for(inner.entered.wait(), 10)
    follower = asyncio.create_task(say(agent, turn("Where are you?")))
    # The follower waits 1 ms, then asks the agent itself (which the gate holds too).
    await eventually(lambda: inner.calls == 2)
    inner.gate.set()
    await asyncio.wait_for(asyncio.gather(leader, follower), 10)
    assert inner.calls == 2


async def test_corrupt_or_foreign_entry_is_ignored_and_deleted(backend: ResponseCache) -> None:
    inner = CountingAgent()
    agent = wrap(inner, backend)
    t = turn("Where are you?")
    key = keys.exact_key("v1", keys.context_line(GREETING, {}), keys.normalise("Where are you?"))
    await backend.put(key, b"\x93not msgpack of ours", ttl_s=60)
    chunks, _ = await say(agent, t)
    assert chunks == ["We are open ", "answer 1 ", "to your question."]
    await agent.flush()
    assert agent.metrics.errors.labels("corrupt")._value.get() == 1
    # Deleted, then replaced by the fresh reply.
    stored = await backend.get(key)
    assert stored is not None
    assert b"answer 1" in stored


async def test_entry_of_another_agent_under_the_key_is_foreign(backend: ResponseCache) -> None:
    other = wrap(CountingAgent(), backend, digest="other")
    await say(other, turn("Where are you?"))
    await other.flush()
    key_other = keys.exact_key("other", keys.context_line(GREETING, {}), "where are you")
    key_mine = keys.exact_key("v1", keys.context_line(GREETING, {}), "where are you")
    data = await backend.get(key_other)
    assert data is not None
    await backend.put(key_mine, data, ttl_s=60)
    inner = CountingAgent()
    mine = wrap(inner, backend)
    await say(mine, turn("Where are you?"))
    assert inner.calls == 1
    assert mine.metrics.errors.labels("corrupt")._value.get() == 1


@pytest.mark.integration
async def test_redis_down_is_a_counted_miss_never_an_error() -> None:
    dead = RedisResponseCache.from_url(f"redis://127.0.0.1:{free_port()}/0", timeout_ms=50)
    inner = CountingAgent()
    agent = wrap(inner, dead)
    for _ in range(3):
        chunks, _ = await say(agent, turn("Where are you?"))
        assert chunks
        await agent.flush()
    assert inner.calls == 3
    assert agent.metrics.errors.labels("unavailable")._value.get() >= 3
    await dead.close()


async def test_disabled_policy_passes_every_turn_through() -> None:
    inner = CountingAgent()
    agent = wrap(inner, MemoryResponseCache(), enabled=False)
    for _ in range(2):
        await say(agent, turn("Where are you?"))
        await agent.flush()
    assert inner.calls == 2


@pytest.mark.parametrize(
    ("earlier", "reply"),
    [
        ("My name is Jordan Lee.", "Sure Jordan, we open at 8 AM."),
        ("Hi, I'm Priya, my number is 415 555 0100.", "Thanks Priya, we open at 8 AM."),
        ("my phone is 4155550100", "I have noted 4155550100; we open at 8 AM."),
        ("my email is jo@example.com", "I will write to jo@example.com. We open at 8 AM."),
    ],
)
async def test_reply_repeating_what_the_caller_disclosed_earlier_is_not_stored(
    earlier: str, reply: str
) -> None:
    class Repeating(CountingAgent):
        async def respond(self, turn: Turn) -> AsyncIterator[str | Action]:
            yield reply

    cache = MemoryResponseCache()
    agent = wrap(Repeating(), cache)
    t = turn("What time do you open?")
    t.transcript = [
        Utterance("user", earlier),
        Utterance("agent", "Thanks. How can I help?"),
        Utterance("user", "What time do you open?"),
    ]
    await say(agent, t)
    await agent.flush()
    assert await cache.count() == 0
    assert agent.metrics.not_stored.labels("earlier_personal_data")._value.get() == 1


async def test_reply_after_an_unrelated_disclosure_is_still_stored() -> None:
    cache = MemoryResponseCache()
    agent = wrap(CountingAgent(), cache)
    t = turn("What time do you open?")
    t.transcript = [
        Utterance("user", "My name is Jordan Lee."),
        Utterance("agent", "Thanks. How can I help?"),
        Utterance("user", "What time do you open?"),
    ]
    await say(agent, t)
    await agent.flush()
    assert await cache.count() == 1

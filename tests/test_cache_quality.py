"""Quality of the semantic tier on shipped pair lists: 0 unsafe hits, paraphrase recall reported.

Each pair is decided exactly as a live lookup decides it: cosine of the two MiniLM vectors
against the default threshold, then the guards (the content check last). Run with ``-s`` to
see the figures. The near-miss suite is also decided with no threshold at all: the guards alone
must refuse every pair, which is what "safe by construction" means here.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from switchboard.agents.base import Action, Agent, Turn
from switchboard.cache.agent import CachedAgent
from switchboard.cache.content import content_agrees
from switchboard.cache.embedding import Embedder
from switchboard.cache.guards import guard_refusal
from switchboard.cache.memory import MemoryResponseCache
from switchboard.cache.policy import DEFAULT_THRESHOLD, CachePolicy
from switchboard.cache.safety import personal_data
from tests.fixtures.conditions import eventually
from tests.test_cache_agent import say, turn

DATA = Path(__file__).parent / "cache_data"


def pairs(name: str) -> list[tuple[str, str]]:
    out = []
    for line in (DATA / name).read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            a, b = line.split("\t")
            out.append((a.strip(), b.strip()))
    return out


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return Embedder()


#: Paraphrase recall measured at the default threshold when the suite was grown (51/109);
#: the floor sits a little below it, so a change that loses recall fails here.
RECALL_FLOOR = 0.44


def decide(
    embedder: Embedder, a: str, b: str, threshold: float = DEFAULT_THRESHOLD
) -> tuple[bool, str, float]:
    score = float(np.dot(embedder.embed(a), embedder.embed(b)))
    if score < threshold:
        return False, "below_threshold", score
    refusal = guard_refusal(a, b)
    return refusal is None, refusal or "hit", score


def test_suites_are_big_enough() -> None:
    assert len(pairs("must_not_hit.tsv")) >= 200
    assert len(pairs("paraphrases.tsv")) >= 100


def test_suites_hold_no_duplicate_or_identical_pairs() -> None:
    for name in ("must_not_hit.tsv", "paraphrases.tsv"):
        seen = set()
        for a, b in pairs(name):
            assert a != b, (name, a)
            assert frozenset((a, b)) not in seen, (name, a, b)
            seen.add(frozenset((a, b)))


def test_no_unsafe_pair_is_ever_a_hit(embedder: Embedder) -> None:
    unsafe = pairs("must_not_hit.tsv")
    outcomes: Counter[str] = Counter()
    leaked = []
    for a, b in unsafe:
        for x, y in ((a, b), (b, a)):
            hit, why, score = decide(embedder, x, y)
            outcomes[why] += 1
            if hit:
                leaked.append((x, y, round(score, 3)))
    caught_by_guard = sum(v for k, v in outcomes.items() if k not in ("below_threshold", "hit"))
    print(
        f"\nmust-not-hit: {2 * len(unsafe)} ordered pairs, unsafe hits {len(leaked)}, "
        f"refused by a guard {caught_by_guard}, below threshold {outcomes['below_threshold']}"
        f" ({dict(outcomes)})"
    )
    assert leaked == []


def test_paraphrase_recall_is_reported_and_precision_is_perfect(embedder: Embedder) -> None:
    positives = pairs("paraphrases.tsv")
    negatives = pairs("must_not_hit.tsv")
    tp = sum(decide(embedder, a, b)[0] for a, b in positives)
    fp = sum(decide(embedder, a, b)[0] for a, b in negatives)
    recall = tp / len(positives)
    precision = tp / (tp + fp) if tp + fp else 1.0
    misses = Counter(decide(embedder, a, b)[1] for a, b in positives)
    print(
        f"\nsemantic tier at threshold {DEFAULT_THRESHOLD}: precision {precision:.3f}, "
        f"paraphrase recall {recall:.3f} ({tp}/{len(positives)}; {dict(misses)})"
    )
    assert fp == 0
    # Not a target: a regression alarm. Recall is a latency win; precision is correctness.
    assert recall >= RECALL_FLOOR


def test_guards_alone_refuse_every_near_miss_pair() -> None:
    """No threshold: the content check (with the named guards) must refuse all of them."""
    served = [
        (x, y)
        for a, b in pairs("must_not_hit.tsv")
        for x, y in ((a, b), (b, a))
        if guard_refusal(x, y) is None
    ]
    assert served == []


def test_the_content_check_alone_refuses_every_near_miss_pair() -> None:
    """Even without the named guards: the contrast is always a differing content word.

    Negation is the one class the content check leaves to its guard ("can't" -> "can"), so
    pairs that differ only by a negation are excluded here and covered by the guard test.
    """
    served = [
        (a, b)
        for a, b in pairs("must_not_hit.tsv")
        if content_agrees(a, b) and guard_refusal(a, b) != "negation"
    ]
    assert served == []


def test_guards_never_refuse_a_line_compared_with_itself() -> None:
    for a, b in pairs("must_not_hit.tsv") + pairs("paraphrases.tsv"):
        assert guard_refusal(a, a) is None
        assert guard_refusal(b, b) is None


class HeldAgent(Agent):
    """Answers with the question it was asked, once ``gate`` opens (so the lookup decides)."""

    def __init__(self) -> None:
        self.gate: asyncio.Event | None = None

    async def respond(self, turn: Turn) -> AsyncIterator[str | Action]:
        if self.gate is not None:
            await self.gate.wait()
        yield f"The answer to: {turn.last_user_text}"


def _context(i: int) -> str:
    """A distinct agent line per pair, without digits (a line with digits is never cached)."""
    letters = ""
    while True:
        i, rest = divmod(i, 26)
        letters += chr(ord("a") + rest)
        if i == 0:
            return f"How can I help, {letters}?"


def _decided(agent: CachedAgent) -> float:
    """Semantic lookups that have reached a verdict (hit or miss) so far."""
    metrics = agent.metrics
    return float(
        metrics.hits.labels("semantic")._value.get()
        + metrics.misses.labels("semantic")._value.get()
    )


async def test_near_miss_lines_asked_on_live_turns_are_never_served(embedder: Embedder) -> None:
    """The incident's reproduction, on the real lookup path: one side of each near-miss pair
    is answered and stored, then the other side is asked in the same context with the agent
    held until the semantic lookup has decided. It must never serve the stored reply."""
    inner = HeldAgent()
    agent = CachedAgent(
        inner, MemoryResponseCache(), CachePolicy(semantic=True), digest="q", embedder=embedder
    )
    await agent.prepare()
    metrics = agent.metrics
    served: list[tuple[str, str]] = []
    looked_up = 0
    asked = [(x, y) for a, b in pairs("must_not_hit.tsv") for x, y in ((a, b), (b, a))]
    for i, (stored, caller) in enumerate(asked):
        if personal_data(stored) or personal_data(caller):
            continue  # personal data (digits): never stored nor looked up
        context = _context(i)
        before = metrics.stored._value.get()
        inner.gate = None
        await say(agent, turn(stored, agent_line=context))
        await agent.flush()
        assert metrics.stored._value.get() == before + 1, stored
        decided = _decided(agent)
        inner.gate = asyncio.Event()
        asking = asyncio.create_task(say(agent, turn(caller, agent_line=context)))
        await eventually(lambda before=decided: _decided(agent) > before)
        inner.gate.set()
        chunks, _ = await asyncio.wait_for(asking, 10.0)
        looked_up += 1
        if chunks != [f"The answer to: {caller}"]:
            served.append((caller, stored))
    print(f"\nlive turns: {looked_up} near-miss lines looked up, {len(served)} served")
    assert looked_up >= 400
    assert served == []
    assert metrics.hits.labels("semantic")._value.get() == 0

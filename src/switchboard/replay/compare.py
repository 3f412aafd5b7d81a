"""What differs between a recorded call and its replay: text, actions, missing, extra.

Text is the same when it is equal after normalising (case, punctuation, spacing), or,
failing that, when the shipped MiniLM embedder puts the two replies at a cosine of at
least ``similarity`` *and* both mention the same numbers (a time, a price or a phone
number that changed is a different answer however close the wording) with as many
negations. ``similarity``
1.0 turns the semantic tier off. Actions are compared as a whole: end call, transfer
number, digits pressed and the tools reported, in order.

A recorded reply with no complete reply in the replay is ``missing``; a reply in the
replay where the recording has none is ``extra``. Turn N is the reply to the N-th
caller line; the greeting is turn 0 (compared, not counted in ``turns_compared``); a
reminder's answer carries the number of the line it followed, with ``caller`` empty.
TTFB is measured for every replayed reply and held against the profile's budget; it is
reported, never a difference (a slow turn is a capacity question, not a regression of
what the agent says).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from switchboard.replay.model import RecordedReply
from switchboard.replay.run import PlayedCall
from switchboard.sim.conversation import TurnOutcome

#: the default cosine a paraphrase must reach: strict. MiniLM scores a weekday swapped
#: ("Monday to Friday" / "Tuesday to Friday") at 0.96, as high as a true rewording, and
#: a negation at 0.89; only near-identical wording reaches 0.98.
DEFAULT_SIMILARITY = 0.98
KINDS = ("text", "action", "missing", "extra")

_NOT_WORD = re.compile(r"[^\w']+")
_NUMBER = re.compile(r"\d+(?:[.,:]\d+)*")
_NEGATION = frozenset({"not", "no", "never", "cannot", "cant", "dont", "won't", "don't", "can't"})


def normalise(text: str) -> str:
    """Lower case, punctuation dropped, single spaces."""
    return " ".join(w.strip("'") for w in _NOT_WORD.split(text.lower()) if w.strip("'"))


def _negated(text: str) -> int:
    return sum(1 for word in text.split() if word in _NEGATION)


class TextMatcher:
    """Exact after normalising, else semantic (the embedder loads on first need)."""

    def __init__(
        self,
        similarity: float = DEFAULT_SIMILARITY,
        embed: Callable[[str], Any] | None = None,
    ) -> None:
        if not 0.0 < similarity <= 1.0:
            raise ValueError(f"similarity must be in (0, 1], got {similarity:g}")
        self.similarity = similarity
        self._embed = embed
        self._vectors: dict[str, Any] = {}

    def same(self, expected: str, got: str) -> bool:
        a, b = normalise(expected), normalise(got)
        if a == b:
            return True
        if self.similarity >= 1.0 or not a or not b:
            return False
        if _NUMBER.findall(a) != _NUMBER.findall(b) or _negated(a) != _negated(b):
            return False
        return float(self._vector(a) @ self._vector(b)) >= self.similarity

    def _vector(self, text: str) -> Any:
        if self._embed is None:
            from switchboard.cache.embedding import Embedder

            self._embed = Embedder().embed
        vector = self._vectors.get(text)
        if vector is None:
            vector = self._vectors[text] = self._embed(text)
        return vector


@dataclass(frozen=True, slots=True)
class Difference:
    call_id: str
    turn: int
    caller: str
    expected: str
    got: str
    kind: str


@dataclass(slots=True)
class Latency:
    budget_ms: float
    turns: int = 0
    over_budget: int = 0
    ttfb_p50_ms: float | None = None
    ttfb_p99_ms: float | None = None
    ttfb_max_ms: float | None = None


@dataclass(slots=True)
class Summary:
    """The JSON summary: ``calls``, ``turns_compared``, ``turns_differing``,
    ``differences`` (the schema others build on), plus ``latency``."""

    calls: int = 0
    turns_compared: int = 0
    turns_differing: int = 0
    differences: list[Difference] = field(default_factory=list)
    latency: Latency | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "turns_compared": self.turns_compared,
            "turns_differing": self.turns_differing,
            "differences": [asdict(d) for d in self.differences],
            "latency": None if self.latency is None else asdict(self.latency),
        }


def describe_actions(
    end_call: bool, transfer: str | None, digits: str | None, tools: Sequence[str]
) -> str:
    """Actions as one readable string (``none`` when there are none)."""
    parts = []
    if end_call:
        parts.append("end_call")
    if transfer:
        parts.append(f"transfer_number {transfer}")
    if digits:
        parts.append(f"digits {digits}")
    if tools:
        parts.append("tool_calls " + ", ".join(tools))
    return "; ".join(parts) or "none"


def _recorded_actions(r: RecordedReply) -> str:
    return describe_actions(r.end_call, r.transfer_number, r.digits, r.tool_calls)


def _got_actions(o: TurnOutcome) -> str:
    return describe_actions(o.end_call, o.transfer_number, o.digits, o.tool_calls)


def _compare_reply(
    matcher: TextMatcher,
    call_id: str,
    turn: int,
    caller: str,
    expected: RecordedReply | None,
    got: TurnOutcome | None,
) -> list[Difference]:
    answered = got is not None and got.completed
    if expected is None:
        if got is not None and answered and (got.reply.strip() or _got_actions(got) != "none"):
            return [Difference(call_id, turn, caller, "", got.reply, "extra")]
        return []
    if got is None or not answered:
        why = "" if got is None else got.reply
        return [Difference(call_id, turn, caller, expected.text, why, "missing")]
    out = []
    if not matcher.same(expected.text, got.reply):
        out.append(Difference(call_id, turn, caller, expected.text, got.reply, "text"))
    want, have = _recorded_actions(expected), _got_actions(got)
    if want != have:
        out.append(Difference(call_id, turn, caller, want, have, "action"))
    return out


def compare(played: Sequence[PlayedCall], matcher: TextMatcher, budget_ms: float) -> Summary:
    summary = Summary(calls=len(played))
    ttfbs: list[float] = []
    for call in played:
        recorded, record = call.recorded, call.record
        cid = recorded.call_id
        if recorded.greeting is not None or record.greeting is not None:
            greeting = (
                None
                if record.greeting is None
                else TurnOutcome(reply=record.greeting, completed=True)
            )
            expected = recorded.greeting
            if expected is not None and (expected.end_call or expected.transfer_number):
                # a greeting that ends or transfers the call: the call's end says so
                greeting = _greeting_with_end(greeting, record.reason)
            summary.differences += _compare_reply(matcher, cid, 0, "", expected, greeting)
        for index, turn in enumerate(recorded.turns):
            outcome = record.outcomes[index] if index < len(record.outcomes) else None
            if outcome is not None and outcome.ttfb_s is not None:
                ttfbs.append(outcome.ttfb_s * 1000.0)
            found = _compare_reply(
                matcher, cid, turn.number, turn.caller or "", turn.reply, outcome
            )
            summary.differences += found
            if turn.caller is not None:
                summary.turns_compared += 1
                if found:
                    summary.turns_differing += 1
    summary.latency = _latency(ttfbs, budget_ms)
    return summary


def _greeting_with_end(outcome: TurnOutcome | None, reason: str) -> TurnOutcome | None:
    if outcome is None:
        return None
    outcome.end_call = reason == "agent_hangup"
    return outcome


def _latency(ttfbs: list[float], budget_ms: float) -> Latency:
    out = Latency(budget_ms=budget_ms, turns=len(ttfbs))
    if not ttfbs:
        return out
    ordered = sorted(ttfbs)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    out.over_budget = sum(1 for t in ordered if t > budget_ms)
    out.ttfb_p50_ms = pick(0.5)
    out.ttfb_p99_ms = pick(0.99)
    out.ttfb_max_ms = round(ordered[-1], 2)
    return out

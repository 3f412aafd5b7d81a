"""What analytics computes, as pure functions: per-event counter increments, a log-bucket
TTFB histogram (durable as counters, so percentiles survive a restart), and windows
over recent events for the live rates.

Counter names are ``family|label`` (``turns|response``, ``ended|transferred``,
``ttfb|response|17``): one flat table holds them all, and Prometheus families are cut
from them at scrape time.

Labels come from the bus, so they are bounded here: a label is cut to ``MAX_LABEL_CHARS``
safe characters, enumerations (turn kinds, how a call ended) map what they do not know to
``other``, and a family keeps at most ``MAX_LABEL_VALUES`` values (``cap_families``): a
writer inventing a new reason per event cannot grow the table or the scrape without end.
An event dated in the future (a clock off, or a forged time) does not enter the live
window beyond ``MAX_SKEW_S``, so it cannot pin the live rates.
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from switchboard.events.types import (
    CallEnded,
    CallEscalated,
    CallStarted,
    Event,
    RetellWebhook,
    TurnCompleted,
)

#: Bucket ``i`` holds TTFBs up to ``2 ** (i / 4)`` ms (19 % apart), up to ~18 min.
BUCKETS_PER_OCTAVE = 4
MAX_BUCKET = 80
WINDOW_S = 300.0
MAX_LABEL_CHARS = 48
MAX_LABEL_VALUES = 64
MAX_SKEW_S = 60.0
OTHER = "other"
KINDS = frozenset({"greeting", "response", "reminder"})
ENDINGS = frozenset({"agent_ended", "transferred", "closed", "dropped", "handed_off"})
_UNSAFE_LABEL = re.compile(r"[^A-Za-z0-9_.:-]")


def label(value: str, known: frozenset[str] | None = None) -> str:
    """``value`` as a bounded label: one of ``known`` (else ``other``), or safe characters."""
    if known is not None:
        return value if value in known else OTHER
    return _UNSAFE_LABEL.sub("_", value[:MAX_LABEL_CHARS]) or "empty"


def cap_families(
    increments: Mapping[str, int], existing: Mapping[str, int], cap: int = MAX_LABEL_VALUES
) -> Counter[str]:
    """``increments`` with the values past a family's first ``cap`` folded into ``other``."""
    seen: dict[str, set[str]] = {}
    for key in existing:
        name, sep, value = key.partition("|")
        if sep:
            seen.setdefault(name, set()).add(value)
    out: Counter[str] = Counter()
    for key, count in increments.items():
        name, sep, value = key.partition("|")
        values = seen.setdefault(name, set())
        if sep and value not in values:
            if len(values) >= cap and name != "ttfb":  # ttfb: kinds x buckets, bounded
                key = f"{name}|{OTHER}"
            values.add(key.partition("|")[2])
        out[key] += count
    return out


def bucket(ms: float) -> int:
    if ms <= 1.0:
        return 0
    return min(MAX_BUCKET, math.ceil(math.log2(ms) * BUCKETS_PER_OCTAVE))


def bucket_upper_ms(index: int) -> float:
    return float(2 ** (index / BUCKETS_PER_OCTAVE))


def quantile_from_buckets(buckets: Mapping[int, int], q: float) -> float | None:
    total = sum(buckets.values())
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for index in sorted(buckets):
        seen += buckets[index]
        if seen >= rank:
            return bucket_upper_ms(index)
    return bucket_upper_ms(max(buckets))  # pragma: no cover


@dataclass(slots=True)
class Delta:
    counters: Counter[str] = field(default_factory=Counter)
    live_added: list[str] = field(default_factory=list)
    live_removed: list[str] = field(default_factory=list)


def fold(events: Iterable[Event]) -> Delta:
    """Counter increments and live-call changes for (deduplicated) events."""
    delta = Delta()
    c = delta.counters
    for event in events:
        data = event.data
        if isinstance(data, TurnCompleted):
            if data.superseded:
                c["superseded"] += 1
                continue
            if data.kind == "greeting":
                c["greetings"] += 1
                continue
            kind = label(data.kind, KINDS)
            c[f"turns|{kind}"] += 1
            if data.fallback_reason:
                c[f"fallback|{label(data.fallback_reason)}"] += 1
            if data.cache_hit:
                c["cache_hits"] += 1
            if data.ttfb_ms is not None:
                c[f"ttfb|{kind}|{bucket(data.ttfb_ms)}"] += 1
        elif isinstance(data, CallStarted):
            if data.resumed:
                c["calls_resumed"] += 1
            else:
                c["calls_started"] += 1
            delta.live_added.append(event.call_id)
        elif isinstance(data, CallEnded):
            how = label(data.how, ENDINGS)
            if not data.final:
                c[f"sockets|{how}"] += 1
                continue
            c[f"ended|{how}"] += 1
            delta.live_removed.append(event.call_id)
        elif isinstance(data, CallEscalated):
            c[f"escalations|{label(data.rule)}"] += 1
        elif isinstance(data, RetellWebhook):
            if data.event == "call_analyzed":
                sentiment = data.analysis.get("user_sentiment")
                c[f"sentiment|{label(sentiment) if isinstance(sentiment, str) else 'unknown'}"] += 1
            elif data.event == "call_ended":
                reason = data.call.get("disconnection_reason")
                c[f"disconnection|{label(reason) if isinstance(reason, str) else 'unknown'}"] += 1
                delta.live_removed.append(event.call_id)
    return delta


def family(counters: Mapping[str, int], name: str) -> dict[str, int]:
    prefix = f"{name}|"
    return {k[len(prefix) :]: v for k, v in counters.items() if k.startswith(prefix) and v}


def ttfb_buckets(counters: Mapping[str, int]) -> dict[str, dict[int, int]]:
    out: dict[str, dict[int, int]] = {}
    for key, value in family(counters, "ttfb").items():
        kind, _, index = key.rpartition("|")
        out.setdefault(kind, {})[int(index)] = value
    return out


class Window:
    """Recent events by their own time, for live rates and windowed percentiles."""

    def __init__(self, span_s: float = WINDOW_S) -> None:
        self.span_s = span_s
        # Bounded: a replay after an outage can bring a burst of old events at once.
        self.turns: deque[tuple[float, str, float | None, bool]] = deque(maxlen=200_000)
        self.starts: deque[float] = deque(maxlen=50_000)
        self.future_dated = 0

    def add(self, events: Sequence[Event], now: float | None = None) -> None:
        """Add by event time; a time past ``now`` + ``MAX_SKEW_S`` is left out (counted in
        ``future_dated``), a smaller skew is taken as ``now``."""
        now = time.time() if now is None else now
        for event in events:
            data = event.data
            at = event.time.timestamp()
            if at > now:
                if at > now + MAX_SKEW_S:
                    self.future_dated += 1
                    continue
                at = now
            if isinstance(data, TurnCompleted) and not data.superseded and data.kind != "greeting":
                kind = label(data.kind, KINDS)
                self.turns.append((at, kind, data.ttfb_ms, data.fallback_reason is not None))
            elif isinstance(data, CallStarted) and not data.resumed:
                self.starts.append(at)

    def trim(self, now: float) -> None:
        horizon = now - self.span_s
        while self.turns and self.turns[0][0] < horizon:
            self.turns.popleft()
        while self.starts and self.starts[0] < horizon:
            self.starts.popleft()

    def summary(self, now: float) -> dict[str, object]:
        """Events arrive roughly in time order; a late one (a replay) is still filtered by
        its own time, only its memory is reclaimed later."""
        self.trim(now)
        horizon = now - self.span_s
        recent = [t for t in self.turns if t[0] >= horizon]
        last_10 = sum(1 for t in recent if t[0] >= now - 10)
        calls_per_min = sum(1 for t in self.starts if t >= now - 60)
        by_kind: dict[str, list[float]] = {}
        fallbacks = 0
        for _, kind, ttfb, fallback in recent:
            fallbacks += fallback
            if ttfb is not None:
                by_kind.setdefault(kind, []).append(ttfb)
        percentiles = {
            kind: {"p50": _pct(values, 0.5), "p99": _pct(values, 0.99), "count": len(values)}
            for kind, values in by_kind.items()
        }
        return {
            "window_s": self.span_s,
            "turns_per_s": last_10 / 10,
            "calls_per_min": calls_per_min,
            "ttfb_ms": percentiles,
            "fallback_rate": fallbacks / len(recent) if recent else 0.0,
        }


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def totals(counters: Mapping[str, int], active_calls: int) -> dict[str, object]:
    turns = family(counters, "turns")
    turn_total = sum(turns.values())
    ended = family(counters, "ended")
    ended_total = sum(ended.values())
    transferred = ended.get("transferred", 0)
    fallbacks = family(counters, "fallback")
    return {
        "active_calls": active_calls,
        "calls_started": counters.get("calls_started", 0),
        "calls_ended": ended_total,
        "turns": turn_total,
        "turns_by_kind": turns,
        "superseded": counters.get("superseded", 0),
        "fallbacks": fallbacks,
        "fallback_rate": sum(fallbacks.values()) / turn_total if turn_total else 0.0,
        "cache_hit_rate": counters.get("cache_hits", 0) / turn_total if turn_total else 0.0,
        "containment": (ended_total - transferred) / ended_total if ended_total else None,
        "end_reasons": ended,
        "disconnection_reasons": family(counters, "disconnection"),
        "escalations": family(counters, "escalations"),
        "sentiment": family(counters, "sentiment"),
        "ttfb_ms": {
            kind: {
                "p50": quantile_from_buckets(b, 0.5),
                "p99": quantile_from_buckets(b, 0.99),
                "count": sum(b.values()),
            }
            for kind, b in ttfb_buckets(counters).items()
        },
    }

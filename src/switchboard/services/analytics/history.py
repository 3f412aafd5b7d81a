"""The dashboard's last hour, kept by the service rather than by the page.

A page opened at 10:42 should show what happened at 10:05; a chart that only holds what
the browser saw since it loaded shows nothing useful to someone who opens it after an
incident. Events are binned by their own time into ``STEP_S`` slots (360 for the hour),
each a turn count, a call-start count and a log-bucket TTFB histogram of response turns
(the same buckets as the durable counters, so a slot's p99 costs a few integers, not every
sample). Future-dated events are clamped like the live window's (``MAX_SKEW_S``).

It is memory only: after a restart the hour refills from new events; the totals, which
are durable, do not depend on it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from switchboard.events.types import CallStarted, Event, TurnCompleted
from switchboard.services.analytics.model import MAX_SKEW_S, bucket, quantile_from_buckets

STEP_S = 10
SPAN_S = 3600


@dataclass(slots=True)
class Slot:
    turns: int = 0
    calls_started: int = 0
    ttfb: Counter[int] = field(default_factory=Counter)


class History:
    """Per-slot turn and call counts and TTFB percentiles for the last ``span_s``."""

    def __init__(self, step_s: int = STEP_S, span_s: int = SPAN_S) -> None:
        self.step_s = step_s
        self.span_s = span_s
        self._slots: dict[int, Slot] = {}

    def add(self, events: Sequence[Event], now: float | None = None) -> None:
        now = time.time() if now is None else now
        oldest = self._slot_of(now - self.span_s)
        for event in events:
            at = event.time.timestamp()
            if at > now:
                if at > now + MAX_SKEW_S:
                    continue
                at = now
            key = self._slot_of(at)
            if key < oldest:
                continue  # older than the hour: a late replay, not history to draw
            data = event.data
            if isinstance(data, TurnCompleted) and not data.superseded and data.kind != "greeting":
                slot = self._slots.setdefault(key, Slot())
                slot.turns += 1
                if data.kind == "response" and data.ttfb_ms is not None:
                    slot.ttfb[bucket(data.ttfb_ms)] += 1
            elif isinstance(data, CallStarted) and not data.resumed:
                self._slots.setdefault(key, Slot()).calls_started += 1
        self._trim(oldest)

    def points(self, now: float | None = None) -> dict[str, object]:
        """Every slot of the last hour, oldest first, empty ones included (a gap is zero
        turns, not a missing point): ``t`` is the slot's start (epoch seconds)."""
        now = time.time() if now is None else now
        last = self._slot_of(now)
        first = last - self.span_s // self.step_s + 1
        self._trim(first)
        out = []
        for key in range(first, last + 1):
            slot = self._slots.get(key)
            out.append(
                {
                    "t": key * self.step_s,
                    "turns_per_s": (slot.turns / self.step_s) if slot else 0.0,
                    "calls_started": slot.calls_started if slot else 0,
                    "ttfb_p50_ms": quantile_from_buckets(slot.ttfb, 0.5) if slot else None,
                    "ttfb_p99_ms": quantile_from_buckets(slot.ttfb, 0.99) if slot else None,
                }
            )
        return {"step_s": self.step_s, "span_s": self.span_s, "points": out}

    def _slot_of(self, at: float) -> int:
        return int(at // self.step_s)

    def _trim(self, oldest: int) -> None:
        for key in [k for k in self._slots if k < oldest]:
            del self._slots[key]

"""Everything a run measures, in one place: HDR histograms (µs resolution), counters and
violations. Calls write here as events happen; the live display reads it while the run
goes on; ``RunReport`` is filled from it at the end.

Single-threaded by design (one event loop), so nothing is locked.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from hdrh.histogram import HdrHistogram

from switchboard.sim.results import LatencySummary, ReconnectEvent, TurnKindStats, Violation

#: Largest value a histogram keeps (10 min, in µs); larger values are clamped to it.
MAX_US = 600_000_000
TURN_KINDS = ("greeting", "response", "reminder", "barge_in")
#: Reconnect events kept for the report (the counts are always exact).
MAX_RECONNECT_EVENTS = 10_000
_CDF_PERCENTILES = (0.0, 1, 5, 10, 25, 50, 75, 90, 95, 99, 99.9, 99.99, 100.0)
#: RunMetrics fields that add up across workers (``export`` / ``merged``).
_COUNTERS = (
    "calls_started",
    "calls_active",
    "calls_completed",
    "reconnects",
    "calls_reconnected",
    "calls_resumed",
    "turns",
    "stale_in_grace",
    "frames_dropped",
    "frames_received",
    "frames_sent",
)
_TALLIES = ("calls_failed", "calls_ended", "reconnects_by_cause", "server_messages", "violations")
_PERCENTILES = frozenset((*_CDF_PERCENTILES, 50, 90, 95, 99, 99.9))


class Histogram:
    """An HDR histogram of seconds, kept in µs, plus an exact running mean.

    The summary asks the histogram for all percentiles in one pass over its buckets (a
    percentile at a time, or hdrh's own mean, would each walk all of them again).
    """

    __slots__ = ("_h", "_sum_us")

    def __init__(self) -> None:
        self._h = HdrHistogram(1, MAX_US, 3)
        self._sum_us = 0

    def record(self, seconds: float) -> None:
        us = min(max(int(seconds * 1_000_000), 1), MAX_US)
        self._h.record_value(us)
        self._sum_us += us

    def encode(self) -> tuple[bytes, int]:
        """The histogram in hdrh's wire form, with the running sum (for ``add_encoded``)."""
        encoded: bytes = self._h.encode()
        return encoded, self._sum_us

    def add_encoded(self, state: tuple[bytes, int]) -> None:
        """Add another process's histogram (``encode``): HDR histograms merge exactly."""
        encoded, sum_us = state
        if sum_us:
            self._h.decode_and_add(encoded)
            self._sum_us += sum_us

    @property
    def count(self) -> int:
        total: int = self._h.get_total_count()
        return total

    def percentile_ms(self, percentile: float) -> float:
        if self.count == 0:
            return 0.0
        return float(self._h.get_value_at_percentile(percentile)) / 1000.0

    def summary(self) -> LatencySummary:
        h = self._h
        count = self.count
        if count == 0:
            return LatencySummary()
        values = h.get_percentile_to_value_dict(list(_PERCENTILES))

        def ms(percentile: float) -> float:
            return float(values[percentile]) / 1000.0

        buckets = [
            (round(item.value_iterated_to / 1000.0, 3), item.count_added_in_this_iter_step)
            for item in h.get_log_iterator(100, 1.5)
        ]
        return LatencySummary(
            count=count,
            min_ms=h.get_min_value() / 1000.0,
            mean_ms=round(self._sum_us / count / 1000.0, 3),
            p50_ms=ms(50),
            p90_ms=ms(90),
            p95_ms=ms(95),
            p99_ms=ms(99),
            p999_ms=ms(99.9),
            max_ms=h.get_max_value() / 1000.0,
            cdf=[(ms(p), p / 100.0) for p in _CDF_PERCENTILES],
            buckets=buckets,
        )


class TurnTimes:
    """TTFB and TTC of one turn kind."""

    __slots__ = ("ttc", "ttfb")

    def __init__(self) -> None:
        self.ttfb = Histogram()
        self.ttc = Histogram()

    def stats(self, kind: str) -> TurnKindStats:
        return TurnKindStats(
            kind=kind, turns=self.ttc.count, ttfb=self.ttfb.summary(), ttc=self.ttc.summary()
        )


class RunMetrics:
    """The running tally of a simulator run."""

    def __init__(self, violation_samples: int = 5) -> None:
        self.started = time.perf_counter()
        #: set when the run is over (``export``); until then ``elapsed`` runs on
        self.finished: float | None = None
        self.per_kind = {kind: TurnTimes() for kind in TURN_KINDS}
        self.connect = Histogram()
        self.greeting = Histogram()
        self.pong_rtt = Histogram()
        self.loop_lag = Histogram()

        self.calls_started = 0
        self.calls_active = 0
        self.calls_completed = 0
        self.calls_failed: Counter[str] = Counter()
        self.calls_ended: Counter[str] = Counter()
        self.reconnects = 0
        self.reconnects_by_cause: Counter[str] = Counter()
        self.calls_reconnected = 0
        self.calls_resumed = 0
        self.reconnect_events: list[ReconnectEvent] = []
        self.loss_to_answer = Histogram()
        self.turns = 0
        self.stale_in_grace = 0
        self.frames_dropped = 0
        self.frames_received = 0
        self.frames_sent = 0
        #: non-response messages from the server, by ``response_type``
        self.server_messages: Counter[str] = Counter()

        self.violations: Counter[str] = Counter()
        self.violation_samples: list[Violation] = []
        self._samples_per_kind = violation_samples

    def elapsed(self) -> float:
        end = self.finished if self.finished is not None else time.perf_counter()
        return end - self.started

    def _histograms(self) -> dict[str, Histogram]:
        named = {
            "connect": self.connect,
            "greeting": self.greeting,
            "pong_rtt": self.pong_rtt,
            "loop_lag": self.loop_lag,
            "loss_to_answer": self.loss_to_answer,
        }
        for kind, times in self.per_kind.items():
            named[f"{kind}.ttfb"] = times.ttfb
            named[f"{kind}.ttc"] = times.ttc
        return named

    def export(self) -> dict[str, Any]:
        """Everything measured, picklable, for ``merged`` in another process. The run ends
        here: ``elapsed`` stops counting (``perf_counter`` is system-wide on Linux, so the
        start and end of workers compare)."""
        if self.finished is None:
            self.finished = time.perf_counter()
        return {
            "histograms": {name: h.encode() for name, h in self._histograms().items()},
            "counters": {name: getattr(self, name) for name in _COUNTERS},
            "tallies": {name: dict(getattr(self, name)) for name in _TALLIES},
            "reconnect_events": list(self.reconnect_events),
            "violation_samples": list(self.violation_samples),
            "started": self.started,
            "finished": self.finished,
        }

    @classmethod
    def merged(cls, states: Sequence[dict[str, Any]], violation_samples: int = 5) -> RunMetrics:
        """One tally of several runs' ``export``s (the workers of one simulator run)."""
        m = cls(violation_samples)
        if not states:
            return m
        histograms = m._histograms()
        for state in states:
            for name, encoded in state["histograms"].items():
                histograms[name].add_encoded(encoded)
            for name, value in state["counters"].items():
                setattr(m, name, getattr(m, name) + value)
            for name, tally in state["tallies"].items():
                getattr(m, name).update(tally)
            room = MAX_RECONNECT_EVENTS - len(m.reconnect_events)
            m.reconnect_events.extend(state["reconnect_events"][:room])
            m.violation_samples.extend(state["violation_samples"])
        kept: Counter[str] = Counter()
        samples = []
        for sample in sorted(m.violation_samples, key=lambda v: v.at_s):
            kept[sample.kind] += 1
            if kept[sample.kind] <= violation_samples:
                samples.append(sample)
        m.violation_samples = samples
        m.started = min(s["started"] for s in states)
        m.finished = max(s["finished"] for s in states)
        return m

    def violation(
        self, kind: str, call_id: str, detail: str, response_id: int | None = None
    ) -> None:
        self.violations[kind] += 1
        if self.violations[kind] <= self._samples_per_kind:
            self.violation_samples.append(
                Violation(
                    kind=kind,
                    call_id=call_id,
                    detail=detail,
                    response_id=response_id,
                    at_s=round(self.elapsed(), 6),
                )
            )

    def socket_lost(self, event: ReconnectEvent) -> None:
        if len(self.reconnect_events) < MAX_RECONNECT_EVENTS:
            self.reconnect_events.append(event)

    def call_ended(self, reason: str, failed: bool) -> None:
        self.calls_active -= 1
        self.calls_ended[reason] += 1
        if failed:
            self.calls_failed[reason] += 1
        else:
            self.calls_completed += 1

    def kind_stats(self) -> list[TurnKindStats]:
        return [
            times.stats(kind)
            for kind, times in self.per_kind.items()
            if times.ttfb.count or times.ttc.count
        ]

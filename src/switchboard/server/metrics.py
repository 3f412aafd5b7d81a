"""Prometheus metrics for one node, in a registry of its own (several apps can share a
process in tests). Children are bound once so the per-turn cost is one observe call."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from switchboard.agents.base import TurnKind
from switchboard.log import dropped_lines
from switchboard.server.webhook import WebhookCounters

if TYPE_CHECKING:
    from switchboard.connections import RedisHealth

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class NodeMetrics:
    """Implements ``SessionObserver`` and holds the node-level gauges and counters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.active_calls = Gauge("switchboard_active_calls", "Open call sockets.", registry=r)
        self.calls_total = Counter("switchboard_calls", "Call sockets accepted.", registry=r)
        self.rejected_total = Counter(
            "switchboard_handshakes_rejected", "Handshakes refused.", ["reason"], registry=r
        )
        first_chunk = Histogram(
            "switchboard_first_chunk_seconds",
            "Request read -> first content frame sent.",
            ["kind"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        completed = Histogram(
            "switchboard_turn_seconds",
            "Request read -> content_complete sent.",
            ["kind"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.save_seconds = Histogram(
            "switchboard_turn_save_seconds",
            "Last chunk sent -> the turn's state saved (what content_complete waits for).",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self._first_chunk = {k: first_chunk.labels(k.value) for k in TurnKind}
        self._completed = {k: completed.labels(k.value) for k in TurnKind}
        self.superseded_total = Counter(
            "switchboard_superseded_generations", "Generations cancelled by barge-in.", registry=r
        )
        self.fallbacks_total = Counter(
            "switchboard_fallbacks", "Turns completed by a fallback.", ["reason"], registry=r
        )
        self.frames_rejected_total = Counter(
            "switchboard_frames_rejected", "Inbound frames rejected.", ["reason"], registry=r
        )
        self.fenced_total = Counter(
            "switchboard_fenced_sessions", "Sessions fenced out by a newer claim.", registry=r
        )
        self.replayed_total = Counter(
            "switchboard_replayed_requests",
            "Completed requests re-sent by Retell, answered from the saved reply.",
            registry=r,
        )
        self.unsaved_turns_total = Counter(
            "switchboard_turns_not_durable",
            "Turns whose content_complete went out before their state was saved (store down).",
            registry=r,
        )
        r.register(_LogCollector())

    def first_chunk(self, kind: TurnKind, elapsed_ns: int) -> None:
        self._first_chunk[kind].observe(elapsed_ns / 1e9)

    def turn_completed(self, kind: TurnKind, elapsed_ns: int) -> None:
        self._completed[kind].observe(elapsed_ns / 1e9)

    def superseded(self) -> None:
        self.superseded_total.inc()

    def fallback(self, reason: str) -> None:
        self.fallbacks_total.labels(reason).inc()

    def frame_rejected(self, reason: str) -> None:
        self.frames_rejected_total.labels(reason).inc()

    def fenced(self) -> None:
        self.fenced_total.inc()

    def replayed(self) -> None:
        self.replayed_total.inc()

    def persisted(self, durable: bool, elapsed_ns: int) -> None:
        self.save_seconds.observe(elapsed_ns / 1e9)
        if not durable:
            self.unsaved_turns_total.inc()


class _LogCollector(Collector):
    """Log lines a failing sink (a closed pipe) could not take; the process kept going."""

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "switchboard_log_lines_dropped",
            "Log lines lost to a failing log sink.",
            dropped_lines(),
        )


class WebhookCollector(Collector):
    """Exports the webhook receiver's plain counters at scrape time (nothing on its path)."""

    def __init__(self, counters: WebhookCounters) -> None:
        self._counters = counters

    def collect(self) -> Iterator[Metric]:
        c = self._counters
        outcomes = CounterMetricFamily(
            "switchboard_webhooks", "Webhook requests by outcome.", labels=["outcome"]
        )
        for outcome, value in (
            ("received", c.received),
            ("delivered", c.delivered),
            ("duplicate", c.duplicates),
            ("superseded", c.superseded),
            ("inbound", c.inbound),
            ("subscriber_error", c.subscriber_errors),
            ("dropped", c.dropped),
        ):
            outcomes.add_metric([outcome], value)
        yield outcomes
        rejected = CounterMetricFamily(
            "switchboard_webhooks_rejected", "Webhook requests refused.", labels=["reason"]
        )
        for reason, value in sorted(c.rejected.items()):
            rejected.add_metric([reason], value)
        yield rejected


class RedisCollector(Collector):
    """Redis reachability as this node saw it: up now, outages, failed commands."""

    def __init__(self, health: RedisHealth) -> None:
        self._health = health

    def collect(self) -> Iterator[Metric]:
        h = self._health
        yield GaugeMetricFamily(
            "switchboard_redis_up", "1 while Redis answers this node.", value=int(h.is_up)
        )
        yield CounterMetricFamily(
            "switchboard_redis_outages", "Times Redis became unreachable.", value=h.outages
        )
        yield CounterMetricFamily(
            "switchboard_redis_errors", "Redis commands that failed on the link.", value=h.errors
        )
        yield CounterMetricFamily(
            "switchboard_redis_busy",
            "Redis commands that found every pooled socket busy for the whole wait.",
            value=h.busy,
        )

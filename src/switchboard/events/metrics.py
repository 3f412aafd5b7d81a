"""The outbox's counters on a node's ``/metrics``, read at scrape time (nothing on its path)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from switchboard.events.outbox import Outbox


class OutboxCollector(Collector):
    def __init__(self, outbox: Outbox) -> None:
        self._outbox = outbox

    def collect(self) -> Iterator[Metric]:
        stats = self._outbox.stats
        events = CounterMetricFamily(
            "switchboard_outbox_events", "Outbox events by outcome.", labels=["outcome"]
        )
        for outcome in ("put", "sent", "spilled", "replayed", "dropped", "parked"):
            events.add_metric([outcome], getattr(stats, outcome))
        yield events
        dropped = CounterMetricFamily(
            "switchboard_outbox_dropped",
            "Events the outbox could not keep (spill file full, disk full, queue full).",
            labels=["reason"],
        )
        for reason, count in sorted(stats.dropped_by_reason.items()):
            dropped.add_metric([reason], count)
        yield dropped
        parked = CounterMetricFamily(
            "switchboard_outbox_parked",
            "Events the bus will never take, kept in the outbox's parked file.",
            labels=["reason"],
        )
        for reason, count in sorted(stats.parked_by_reason.items()):
            parked.add_metric([reason], count)
        yield parked
        yield CounterMetricFamily(
            "switchboard_outbox_spill_corrupt",
            "Damaged spill records skipped on replay (their events are lost).",
            value=self._outbox.corrupt,
        )
        yield CounterMetricFamily(
            "switchboard_outbox_stalls",
            "Sends that hung past the stall limit, so the queue went to the spill file.",
            value=stats.stalls,
        )
        yield CounterMetricFamily(
            "switchboard_outbox_send_failures", "Bus sends that failed.", value=stats.send_failures
        )
        yield GaugeMetricFamily(
            "switchboard_outbox_depth", "Events queued in memory.", value=self._outbox.depth
        )
        yield GaugeMetricFamily(
            "switchboard_outbox_spilling",
            "1 while events go to the spill file (bus down or behind).",
            value=1 if self._outbox.spilling else 0,
        )

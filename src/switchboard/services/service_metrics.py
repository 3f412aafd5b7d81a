"""What every service's consume loop counts, exported on its ``/metrics``.

The runner updates a :class:`ServiceStats`; :class:`ServiceCollector` turns it into
Prometheus families labelled with the consumer group. Analytics adds the collector to its
own registry; archive and escalation serve it alone (``metrics_app``) when given a port.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

PREFIX = "switchboard_service_"


@dataclass(slots=True)
class ServiceStats:
    group: str
    handled: int = 0
    #: parked by this process, by reason
    parked: Counter[str] = field(default_factory=Counter)
    #: the dead-letter store's letters, by (reason, state); refreshed by the runner
    dead_letters: Counter[tuple[str, str]] = field(default_factory=Counter)
    replayed: int = 0
    transient_retries: int = 0
    #: entries the group had not acked and the bus no longer held
    gaps: int = 0
    #: unread entries or messages for this group; ``None`` until known
    lag: int | None = None


class ServiceCollector(Collector):
    def __init__(self, stats: ServiceStats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self._stats
        labels = ["group"]

        def counter(name: str, help_: str, value: float) -> CounterMetricFamily:
            family = CounterMetricFamily(f"{PREFIX}{name}", help_, labels=labels)
            family.add_metric([s.group], value)
            return family

        yield counter("events_handled", "Events the handler applied.", s.handled)
        parked = CounterMetricFamily(
            f"{PREFIX}dead_letters_parked",
            "Messages parked as dead letters by this process, by reason.",
            labels=["group", "reason"],
        )
        for reason, count in sorted(s.parked.items()):
            parked.add_metric([s.group, reason], count)
        yield parked
        stored = GaugeMetricFamily(
            f"{PREFIX}dead_letters",
            "Dead letters in the store, by reason and state (parked, replay, replayed).",
            labels=["group", "reason", "state"],
        )
        for (reason, state), count in sorted(s.dead_letters.items()):
            stored.add_metric([s.group, reason, state], count)
        yield stored
        yield counter("dead_letters_replayed", "Dead letters replayed successfully.", s.replayed)
        yield counter(
            "transient_retries", "Batches retried after a transient failure.", s.transient_retries
        )
        yield counter(
            "bus_gap_entries", "Entries lost before this group read them (trimmed).", s.gaps
        )
        if s.lag is not None:
            lag = GaugeMetricFamily(
                f"{PREFIX}bus_lag", "Entries on the bus this group has not read.", labels=labels
            )
            lag.add_metric([s.group], s.lag)
            yield lag


def metrics_app(stats: ServiceStats) -> Starlette:
    """``/metrics`` and ``/healthz`` for a service without a dashboard."""
    registry = CollectorRegistry()
    registry.register(ServiceCollector(stats))

    async def metrics(_request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route("/metrics", metrics), Route("/healthz", healthz)])

"""The analytics service: live and cumulative aggregates over the event stream, served as
Prometheus metrics (``/metrics``), JSON (``/api/summary``, ``/api/calls``) and a
dashboard page (``/``) with live charts and the recent calls' transcripts (read from
the archive, when ``--archive-db`` is given).

Cumulative counters (and the TTFB histogram) are durable in their own SQLite file,
updated with the processed event ids in one transaction per batch, so a restart or a
redelivery neither loses nor double-counts. Windowed rates are computed from recent
events in memory and refill as events arrive.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from importlib import resources
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from switchboard.events.bus import Batch
from switchboard.services.analytics.history import History
from switchboard.services.analytics.model import (
    MAX_BUCKET,
    Window,
    bucket_upper_ms,
    family,
    totals,
    ttfb_buckets,
)
from switchboard.services.analytics.store import AnalyticsStore
from switchboard.services.archive import queries as q
from switchboard.services.archive.store import ArchiveDb
from switchboard.services.service_metrics import ServiceCollector, ServiceStats


class Analytics:
    """The batch handler and the state the HTTP side reads."""

    def __init__(self, store: AnalyticsStore) -> None:
        self.store = store
        self.window = Window()
        self.history = History()

    async def handle(self, batch: Batch) -> None:
        fresh = await self.store.apply(batch.events, skipped=sum(batch.skipped.values()))
        self.window.add(fresh)
        self.history.add(fresh)

    def summary(self, now: float | None = None) -> dict[str, Any]:
        counters = self.store.counters
        return {
            "totals": totals(counters, len(self.store.live)),
            "window": self.window.summary(time.time() if now is None else now),
            "events_applied": counters.get("events_applied", 0),
            "duplicates_dropped": counters.get("duplicates_dropped", 0),
            "messages_skipped": counters.get("messages_skipped", 0),
        }


class AnalyticsCollector(Collector):
    def __init__(self, analytics: Analytics) -> None:
        self._analytics = analytics

    def collect(self) -> Iterator[Metric]:
        counters = self._analytics.store.counters
        p = "switchboard_analytics_"
        yield GaugeMetricFamily(
            f"{p}active_calls", "Calls started and not ended.", len(self._analytics.store.live)
        )
        yield CounterMetricFamily(
            f"{p}calls_started", "Calls started.", counters.get("calls_started", 0)
        )
        for name, label, help_ in (
            ("turns", "kind", "Completed turns."),
            ("fallback", "reason", "Turns ended by a fallback."),
            ("ended", "how", "Calls ended, by how."),
            ("escalations", "rule", "Escalations, by rule."),
            ("sentiment", "sentiment", "Analyzed calls, by user sentiment."),
        ):
            metric = CounterMetricFamily(f"{p}{name}", help_, labels=[label])
            for key, value in sorted(family(counters, name).items()):
                metric.add_metric([key], value)
            yield metric
        yield CounterMetricFamily(
            f"{p}cache_hits", "Turns served from the cache.", counters.get("cache_hits", 0)
        )
        for name in ("events_applied", "duplicates_dropped", "messages_skipped"):
            yield CounterMetricFamily(f"{p}{name}", name.replace("_", " "), counters.get(name, 0))
        histogram = HistogramMetricFamily(
            f"{p}ttfb_ms", "Request read to first chunk, ms.", labels=["kind"]
        )
        for kind, buckets in sorted(ttfb_buckets(counters).items()):
            cumulative, running = [], 0
            for index in range(MAX_BUCKET + 1):
                running += buckets.get(index, 0)
                if buckets.get(index) or index == MAX_BUCKET:
                    cumulative.append((f"{bucket_upper_ms(index):g}", running))
            cumulative[-1] = ("+Inf", running)
            histogram.add_metric([kind], cumulative, sum_value=0.0)
        yield histogram


#: Most calls ``/api/calls`` returns: each comes with its whole transcript.
MAX_CALLS = 50


def _limit(raw: str | None, default: int = 10) -> int | None:
    """The ``limit`` query parameter, or ``None`` when it is not 1..``MAX_CALLS``."""
    if raw is None or raw == "":
        return default
    if not raw.isdigit():
        return None
    value = int(raw)
    return value if 1 <= value <= MAX_CALLS else None


def dashboard_html() -> str:
    return (resources.files("switchboard.services") / "static" / "dashboard.html").read_text()


def create_app(
    analytics: Analytics, archive: ArchiveDb | None, stats: ServiceStats | None = None
) -> Starlette:
    registry = CollectorRegistry()
    registry.register(AnalyticsCollector(analytics))
    if stats is not None:
        registry.register(ServiceCollector(stats))
    page = dashboard_html()

    async def index(_request: Request) -> Response:
        return HTMLResponse(page)

    async def summary(_request: Request) -> Response:
        return JSONResponse(analytics.summary())

    async def history(_request: Request) -> Response:
        return JSONResponse(analytics.history.points())

    async def calls(request: Request) -> Response:
        if archive is None:
            return JSONResponse({"archive": False, "calls": []})
        limit = _limit(request.query_params.get("limit"))
        if limit is None:
            return JSONResponse(
                {"error": f"limit must be a whole number from 1 to {MAX_CALLS}"}, status_code=400
            )
        out = []
        for row in await q.list_calls(archive, limit):
            _, turns = await q.show_call(archive, row.call_id)
            out.append(
                {
                    "call_id": row.call_id,
                    "started_at": row.started_at,
                    "end_how": row.end_how,
                    "sentiment": row.sentiment,
                    "escalated": row.escalated_rule,
                    "turns": [
                        {"caller": t.caller_line, "agent": t.reply, "kind": t.kind}
                        for t in turns
                        if not t.superseded
                    ],
                }
            )
        return JSONResponse({"archive": True, "calls": out})

    async def metrics(_request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def healthz(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(
        routes=[
            Route("/", index),
            Route("/api/summary", summary),
            Route("/api/history", history),
            Route("/api/calls", calls),
            Route("/metrics", metrics),
            Route("/healthz", healthz),
        ]
    )

"""The server's response-cache counters, read from its ``/metrics`` after a run.

The simulator and the bench report hits by tier, misses and the hit rate from the server's
own Prometheus counters (``switchboard_cache_*``), so the figures are what the server
counted, not a guess from latencies. A server that does not expose them (or a URL behind
which ``/metrics`` is not reachable) gives an empty mapping, never an error.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

import httpx
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families


def metrics_url(ws_url: str) -> str:
    """``ws://host:port/llm-websocket`` -> ``http://host:port/metrics`` (``wss`` -> ``https``)."""
    parts = urlsplit(ws_url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, "/metrics", "", ""))


def _scrape(url: str, timeout_s: float) -> list[Metric]:
    """The metric families at ``url``; none when it cannot be read or parsed."""
    try:
        text = httpx.get(url, timeout=timeout_s, trust_env=False).text
        return list(text_string_to_metric_families(text))
    except (httpx.HTTPError, ValueError):
        return []


def cache_counters(url: str, timeout_s: float = 5.0) -> dict[str, float]:
    """``{"hits:exact": n, "misses:exact": n, ..., "hit_rate": r}``, or ``{}``."""
    families = _scrape(url, timeout_s)
    out: dict[str, float] = {}
    buckets: dict[str, list[tuple[float, float]]] = {}
    for family in families:
        if not family.name.startswith("switchboard_cache_"):
            continue
        name = family.name.removeprefix("switchboard_cache_")
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                tier = sample.labels.get("tier", "")
                buckets.setdefault(tier, []).append((float(sample.labels["le"]), sample.value))
                continue
            if sample.name.endswith(("_total", "_count")):
                label = next(iter(sample.labels.values()), "")
                out[f"{name}:{label}" if label else name] = sample.value
    if not out:
        return {}
    out.update(cache_summary(out, buckets))
    return out


def cache_summary(
    counters: dict[str, float], buckets: dict[str, list[tuple[float, float]]]
) -> dict[str, float]:
    """Hit rate over looked-up turns, and per tier the p99 bucket bound of cached first
    chunks in ms (server side: turn start -> first cached chunk handed to the session)."""
    hits = sum(v for k, v in counters.items() if k.startswith("hits:"))
    # Every looked-up turn tries the exact tier first; the other tiers answer its misses.
    lookups = counters.get("hits:exact", 0.0) + counters.get("misses:exact", 0.0)
    # "embedding_busy" is a skipped semantic lookup inside a looked-up turn, not a turn.
    bypassed = sum(
        v
        for k, v in counters.items()
        if k.startswith("bypassed:") and k != "bypassed:embedding_busy"
    )
    summary = {
        "hit_count": hits,
        "hit_rate": hits / lookups if lookups else 0.0,
        "hit_rate_all_turns": hits / (lookups + bypassed) if lookups + bypassed else 0.0,
    }
    for tier, points in buckets.items():
        total = max((count for _, count in points), default=0.0)
        for bound, count in sorted(points):
            if total and count >= 0.99 * total:
                # JSON has no infinity: past the last bucket reads as -1.
                summary[f"hit_first_chunk_p99_le_ms:{tier}"] = (
                    bound * 1000 if bound != float("inf") else -1.0
                )
                break
    return summary


def cache_text(cache: dict[str, float]) -> str:
    """One line for reports: hits by tier, misses, hit rates, backend errors."""
    hits = ", ".join(
        f"{tier} {cache.get(f'hits:{tier}', 0):.0f}"
        for tier in ("exact", "semantic", "single_flight")
    )
    return (
        f"hits {hits}; misses {cache.get('misses:exact', 0):.0f}; hit rate "
        f"{100 * cache.get('hit_rate', 0):.0f}% of looked-up turns "
        f"({100 * cache.get('hit_rate_all_turns', 0):.0f}% of all); "
        f"backend errors {cache.get('errors:unavailable', 0):.0f}"
    )


#: The server's histograms behind a turn's latency breakdown (``server/metrics.py``), by
#: the segment each times: request read -> first chunk sent, -> content_complete sent, and
#: last chunk -> state saved (what content_complete waits for).
SEGMENTS = {
    "first_chunk": ("switchboard_first_chunk_seconds", {"kind": "response"}),
    "turn": ("switchboard_turn_seconds", {"kind": "response"}),
    "save": ("switchboard_turn_save_seconds", {}),
}

Buckets = dict[str, list[tuple[float, float]]]


def segment_buckets(url: str, timeout_s: float = 5.0) -> Buckets:
    """The cumulative bucket counts of each segment's histogram, now."""
    out: Buckets = {}
    for family in _scrape(url, timeout_s):
        for segment, (name, labels) in SEGMENTS.items():
            if family.name != name:
                continue
            for sample in family.samples:
                if not sample.name.endswith("_bucket"):
                    continue
                if any(sample.labels.get(k) != v for k, v in labels.items()):
                    continue
                out.setdefault(segment, []).append((float(sample.labels["le"]), sample.value))
    return out


def merge_buckets(parts: Iterable[Buckets]) -> Buckets:
    """Several nodes' segment buckets as one server's: counts at the same bound add up."""
    total: dict[str, dict[float, float]] = {}
    for buckets in parts:
        for segment, points in buckets.items():
            into = total.setdefault(segment, {})
            for le, count in points:
                into[le] = into.get(le, 0.0) + count
    return {segment: sorted(points.items()) for segment, points in total.items()}


def turn_breakdown(before: Buckets, after: Buckets) -> dict[str, float]:
    """Per segment, the run's own p50 and p99 bucket bounds in ms (``after`` minus
    ``before``, so earlier traffic on the server does not count) and the turn count:
    ``first_chunk_p50_le_ms``, ..., ``save_p99_le_ms``, ``turns``. ``{}`` if absent."""
    out: dict[str, float] = {}
    for segment, points in after.items():
        earlier = dict(before.get(segment, []))
        run = sorted((le, count - earlier.get(le, 0.0)) for le, count in points)
        total = run[-1][1] if run else 0.0
        if total <= 0:
            continue
        if segment == "turn":
            out["turns"] = total
        for q in (0.5, 0.99):
            bound = next(le for le, count in run if count >= q * total)
            out[f"{segment}_p{round(q * 100)}_le_ms"] = (
                -1.0 if bound == float("inf") else bound * 1e3
            )
    return out


def _le(timings: dict[str, float], key: str) -> str:
    value = timings.get(key)
    return "-" if value is None else ("past the last bucket" if value < 0 else f"<= {value:g}")


def _outside_ms(timings: dict[str, float], client_ttfb_p50_ms: float) -> float | None:
    """At p50, how much of the client's time to first byte the server did not see."""
    server_p50 = timings.get("first_chunk_p50_le_ms")
    if server_p50 is None or server_p50 < 0:
        return None
    return max(0.0, client_ttfb_p50_ms - server_p50)


def breakdown_figures(timings: dict[str, float], client_ttfb_p50_ms: float) -> dict[str, str]:
    """The breakdown as labelled figures (``switchboard validate``'s report)."""
    figures = {
        f"server {label} {q} (ms)": _le(timings, f"{key}_{q}_le_ms")
        for key, label in (("first_chunk", "first chunk"), ("save", "save before completing"))
        for q in ("p50", "p99")
    }
    outside = _outside_ms(timings, client_ttfb_p50_ms)
    if outside is not None:
        figures["outside the server p50 (ms)"] = f">= {outside:.1f}"
    return figures


def breakdown_text(timings: dict[str, float], client_ttfb_p50_ms: float) -> str:
    """One line for reports: where a response turn's time went, by the server's clock."""

    def le(key: str) -> str:
        return _le(timings, key)

    parts = [
        f"server first chunk p50 {le('first_chunk_p50_le_ms')} ms, "
        f"p99 {le('first_chunk_p99_le_ms')} ms",
        f"save before content_complete p50 {le('save_p50_le_ms')} ms, "
        f"p99 {le('save_p99_le_ms')} ms",
    ]
    outside = _outside_ms(timings, client_ttfb_p50_ms)
    if outside is not None:
        parts.append(f"network, load balancer and queueing at p50 >= {outside:.1f} ms")
    return "; ".join(parts)


def loop_health(url: str, timeout_s: float = 5.0) -> dict[str, float]:
    """The server's event-loop lag and GC pauses from its ``/metrics``
    (``server.loop_health``): ``lag_samples``, ``lag_p99_le_ms``, ``lag_max_le_ms``, and
    per generation ``gc_count:N``, ``gc_ms:N``, ``gc_max_le_ms:N``. ``{}`` if absent.

    Histograms give bucket bounds, not exact values: ``le`` reads "at most"."""
    families = _scrape(url, timeout_s)
    out: dict[str, float] = {}
    for family in families:
        if family.name == "switchboard_event_loop_lag_seconds":
            points = [
                (float(s.labels["le"]), s.value)
                for s in family.samples
                if s.name.endswith("_bucket")
            ]
            total = max((count for _, count in points), default=0.0)
            out["lag_samples"] = total
            out["lag_p99_le_ms"] = _bound_ms(points, 0.99 * total)
            out["lag_max_le_ms"] = _bound_ms(points, total)
        elif family.name == "switchboard_gc_pause_seconds":
            by_gen: dict[str, list[tuple[float, float]]] = {}
            for s in family.samples:
                gen = s.labels.get("generation", "")
                if s.name.endswith("_bucket"):
                    by_gen.setdefault(gen, []).append((float(s.labels["le"]), s.value))
                elif s.name.endswith("_count"):
                    out[f"gc_count:{gen}"] = s.value
                elif s.name.endswith("_sum"):
                    out[f"gc_ms:{gen}"] = s.value * 1000
            for gen, points in by_gen.items():
                total = max((count for _, count in points), default=0.0)
                if total:
                    out[f"gc_max_le_ms:{gen}"] = _bound_ms(points, total)
    return out


def _bound_ms(points: list[tuple[float, float]], at_least: float) -> float:
    """The smallest bucket bound holding ``at_least`` samples, in ms (-1: past the last)."""
    for bound, count in sorted(points):
        if count >= at_least:
            return bound * 1000 if bound != float("inf") else -1.0
    return -1.0

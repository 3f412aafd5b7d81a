"""Analytics' pure core: what each event adds, percentiles from the durable histogram,
containment, and the live window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from switchboard.events.types import (
    CallEnded,
    CallEscalated,
    CallStarted,
    Event,
    EventData,
    RetellWebhook,
    TurnCompleted,
    make_event,
)
from switchboard.services.analytics.model import (
    MAX_LABEL_CHARS,
    Window,
    bucket,
    bucket_upper_ms,
    cap_families,
    fold,
    quantile_from_buckets,
    totals,
)


def ev(data: EventData, call_id: str = "c1", type_: str | None = None) -> Event:
    return make_event(data, call_id=call_id, source="node/n", type=type_)


def turn(ttfb: float, **kw: object) -> Event:
    return ev(TurnCompleted(response_id=1, kind="response", ttfb_ms=ttfb, ttc_ms=ttfb + 5, **kw))  # type: ignore[arg-type]


def test_bucket_bounds_hold_the_value_within_a_fifth() -> None:
    for value in (1.5, 7.0, 42.0, 180.0, 2500.0):
        upper = bucket_upper_ms(bucket(value))
        assert value <= upper < value * 1.2


def test_quantiles_come_from_the_buckets() -> None:
    buckets = {bucket(10.0): 98, bucket(400.0): 2}
    assert quantile_from_buckets(buckets, 0.5) == pytest.approx(bucket_upper_ms(bucket(10.0)))
    assert quantile_from_buckets(buckets, 0.99) == pytest.approx(bucket_upper_ms(bucket(400.0)))
    assert quantile_from_buckets({}, 0.5) is None


def test_fold_counts_turns_fallbacks_endings_escalations_and_sentiment() -> None:
    events = [
        ev(CallStarted(node_id="n")),
        ev(CallStarted(node_id="n", resumed=True)),
        ev(TurnCompleted(response_id=0, kind="greeting", reply="Hi")),
        turn(10.0),
        turn(20.0, fallback_reason="agent_error"),
        turn(30.0, cache_hit=True),
        ev(TurnCompleted(response_id=4, kind="response", superseded=True)),
        ev(CallEnded(node_id="n", how="dropped")),
        ev(CallEnded(node_id="n", how="transferred")),
        ev(CallStarted(node_id="n"), call_id="c2"),
        ev(CallEnded(node_id="n", how="closed"), call_id="c2"),
        ev(CallEscalated(rule="asks_for_human", action="transfer")),
        ev(
            RetellWebhook(
                event="call_analyzed", call={"call_analysis": {"user_sentiment": "Negative"}}
            ),
            type_="retell.call_analyzed",
        ),
    ]
    delta = fold(events)
    summary = totals(delta.counters, active_calls=0)
    assert summary["calls_started"] == 2
    assert summary["turns"] == 3
    assert summary["superseded"] == 1
    assert summary["fallbacks"] == {"agent_error": 1}
    assert summary["fallback_rate"] == pytest.approx(1 / 3)
    assert summary["cache_hit_rate"] == pytest.approx(1 / 3)
    assert summary["end_reasons"] == {"transferred": 1, "closed": 1}
    assert summary["containment"] == pytest.approx(0.5)
    assert summary["escalations"] == {"asks_for_human": 1}
    assert summary["sentiment"] == {"Negative": 1}
    assert summary["ttfb_ms"]["response"]["count"] == 3  # type: ignore[index]
    assert delta.live_added == ["c1", "c1", "c2"]
    assert delta.live_removed == ["c1", "c2"]


def test_window_rates_and_percentiles_use_event_time() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    window = Window(span_s=300)
    events = []
    for i in range(100):
        event = turn(float(i + 1))
        events.append(msgspec.structs.replace(event, time=now - timedelta(seconds=i * 0.05)))
    old = msgspec.structs.replace(turn(999.0), time=now - timedelta(seconds=400))
    start = msgspec.structs.replace(ev(CallStarted(node_id="n")), time=now - timedelta(seconds=30))
    window.add([*events, old, start])
    summary = window.summary(now.timestamp())
    assert summary["turns_per_s"] == pytest.approx(10.0)
    assert summary["calls_per_min"] == 1
    ttfb = summary["ttfb_ms"]["response"]  # type: ignore[index]
    assert ttfb["count"] == 100
    assert ttfb["p50"] == 50.0
    assert ttfb["p99"] == 99.0


def test_labels_from_the_bus_are_bounded() -> None:
    events = [
        ev(TurnCompleted(response_id=1, kind="x" * 500, fallback_reason='a"b\nc{}' * 40)),
        ev(CallEnded(node_id="n", how="exploded")),
        ev(CallEscalated(rule="rule with spaces", action="alert")),
    ]
    counters = fold(events).counters
    assert counters["turns|other"] == 1
    assert counters["ended|other"] == 1
    assert counters["escalations|rule_with_spaces"] == 1
    (fallback,) = [k for k in counters if k.startswith("fallback|")]
    reason = fallback.partition("|")[2]
    assert len(reason) == MAX_LABEL_CHARS
    assert set(reason) <= set("ab_c")


def test_a_family_keeps_at_most_its_cap_of_values() -> None:
    existing = {f"fallback|r{i}": 1 for i in range(3)} | {"turns|response": 5}
    increments = {"fallback|r1": 2, "fallback|new1": 1, "fallback|new2": 4, "turns|reminder": 1}
    capped = cap_families(increments, existing, cap=4)
    assert capped == {
        "fallback|r1": 2,
        "fallback|new1": 1,  # the fourth value
        "fallback|other": 4,  # past the cap
        "turns|reminder": 1,
    }


def test_a_future_dated_event_does_not_pin_the_live_rates() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC).timestamp()
    window = Window(span_s=300)
    future = msgspec.structs.replace(
        turn(10.0), time=datetime(2027, 1, 1, tzinfo=UTC)
    )  # a year ahead
    slightly = msgspec.structs.replace(
        turn(20.0), time=datetime.fromtimestamp(now + 5, UTC)
    )  # a clock 5 s fast: taken as now
    window.add([future, slightly], now=now)
    assert window.future_dated == 1
    assert window.summary(now)["turns_per_s"] == pytest.approx(0.1)
    assert window.summary(now + 60)["turns_per_s"] == 0.0

"""The analytics service's last hour (``analytics.history.History``): slots by event time,
every slot of the hour present, percentiles per slot, skew and age bounded."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from switchboard.events.types import CallStarted, Event, TurnCompleted, make_event
from switchboard.services.analytics.history import STEP_S, History

NOW = 1_800_000_000.0  # a slot boundary


def at(event: Event, t: float) -> Event:
    return msgspec.structs.replace(event, time=datetime.fromtimestamp(t, UTC))


def turn(t: float, ttfb: float = 20.0, kind: str = "response", superseded: bool = False) -> Event:
    data = TurnCompleted(
        response_id=1, kind=kind, reply="ok", ttfb_ms=ttfb, ttc_ms=50.0, superseded=superseded
    )
    return at(make_event(data, call_id="c", source="n"), t)


def started(t: float, resumed: bool = False) -> Event:
    return at(make_event(CallStarted(node_id="n", resumed=resumed), call_id="c", source="n"), t)


def test_the_hour_has_every_slot_oldest_first_and_gaps_are_zero() -> None:
    history = History()
    history.add([turn(NOW - 1800), turn(NOW - 1795), started(NOW - 1800)], now=NOW)
    body = history.points(now=NOW)
    points = body["points"]
    assert isinstance(points, list)
    assert len(points) == 3600 // STEP_S
    times = [p["t"] for p in points]
    assert times == sorted(times)
    assert times[-1] == int(NOW // STEP_S) * STEP_S
    busy = [p for p in points if p["turns_per_s"]]
    assert len(busy) == 1
    assert busy[0]["t"] == NOW - 1800
    assert busy[0]["turns_per_s"] == 2 / STEP_S
    assert busy[0]["calls_started"] == 1
    assert sum(1 for p in points if p["ttfb_p99_ms"] is None) == len(points) - 1


def test_percentiles_are_per_slot_and_only_of_response_turns() -> None:
    history = History()
    events = [turn(NOW - 5, ttfb=float(ms)) for ms in range(1, 101)]
    events += [turn(NOW - 5, ttfb=9_000.0, kind="reminder")]  # counted as a turn, not a TTFB
    events += [turn(NOW - 5, kind="greeting"), turn(NOW - 5, superseded=True)]  # neither
    history.add(events, now=NOW)
    (last_busy,) = [p for p in history.points(now=NOW)["points"] if p["turns_per_s"]]  # type: ignore[union-attr]
    assert last_busy["turns_per_s"] == 101 / STEP_S
    assert 40 <= last_busy["ttfb_p50_ms"] <= 70
    assert 90 <= last_busy["ttfb_p99_ms"] <= 130


def test_old_and_far_future_events_stay_out_and_old_slots_are_forgotten() -> None:
    history = History()
    history.add([turn(NOW - 7200), turn(NOW + 3600)], now=NOW)
    assert not any(p["turns_per_s"] for p in history.points(now=NOW)["points"])  # type: ignore[union-attr]
    history.add([turn(NOW - 30)], now=NOW)
    later = NOW + 3600
    assert not any(p["turns_per_s"] for p in history.points(now=later)["points"])  # type: ignore[union-attr]
    assert history._slots == {}

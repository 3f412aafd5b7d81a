"""What the simulator reports about reconnects: counts by cause, calls resumed, the
wall-clock times of each socket loss and of the first turn answered after it, and a
scenario's expectations judged across the reconnect."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import msgspec
import pytest

from switchboard.sim.report import render_html
from switchboard.sim.runner import Simulation, simulate
from switchboard.sim.scenario import parse_scenario
from switchboard.sim.verdict import judge
from tests.fixtures.broken_servers import (
    DropsMidCall,
    Handler,
    NeverPongs,
    ReferenceServer,
    RepeatsGreeting,
    fast_options,
)

pytestmark = pytest.mark.integration

Start = Callable[[Handler], Awaitable[str]]

THREE_TURNS = parse_scenario(
    "expect_greeting_contains: thanks for calling\n"
    "turns:\n"
    " - say: first words\n"
    "   expect: {contains: 'You said: first words', action: none}\n"
    " - say: second words\n"
    "   expect: {contains: 'You said: second words', action: none}\n"
    " - say: third words\n"
    "   expect: {contains: 'You said: third words'}\n"
    " - say: goodbye then\n"
    "   expect: {action: end_call}\n",
    "three-turns.yaml",
)


async def test_a_socket_dropped_mid_scenario_is_resumed_and_expectations_hold(
    llm_server: Start,
) -> None:
    server = DropsMidCall()
    url = await llm_server(server)
    before = time.time()
    report = await Simulation(fast_options(url, calls=0), [THREE_TURNS]).run()
    after = time.time()

    assert report.scenarios[0].passed, report.scenarios[0].failures
    assert report.violations == {}
    assert report.calls_failed == {}
    assert report.reconnects == 1
    assert report.reconnects_by_cause == {"abnormal": 1}
    assert report.calls_reconnected == 1
    assert report.calls_resumed == 1
    (event,) = report.reconnect_events
    assert event.cause == "abnormal"
    assert event.begin_empty is True
    assert event.reopened_at is not None
    assert event.answered_at is not None
    assert before <= event.lost_at <= event.reopened_at <= event.answered_at <= after
    assert report.loss_to_answer.count == 1
    # The second request died with its socket and was asked again on the new one.
    assert [r["response_id"] for r in server.seen.requests] == [1, 2, 3, 4, 5]
    assert judge(msgspec.structs.replace(report, budget_ms=1e9)).passed  # timings aside


async def test_random_calls_dropped_mid_call_each_resume_once(llm_server: Start) -> None:
    server = DropsMidCall()
    url = await llm_server(server)
    report = await simulate(fast_options(url, calls=5, turns=3))

    assert report.calls_failed == {}
    assert report.violations == {}
    assert report.reconnects_by_cause == {"abnormal": 5}
    assert report.calls_reconnected == report.calls_resumed == 5
    assert {e.call_id for e in report.reconnect_events} == server.dropped
    assert all(e.answered_at is not None for e in report.reconnect_events)


async def test_a_second_greeting_is_not_a_resume(llm_server: Start) -> None:
    url = await llm_server(RepeatsGreeting())
    report = await simulate(fast_options(url, calls=1, turns=2))

    assert report.violations == {"repeated_greeting": 1}
    assert report.calls_reconnected == 1
    assert report.calls_resumed == 0
    assert report.reconnect_events[0].begin_empty is False


async def test_reconnects_after_missing_pongs_are_counted_as_keepalive(
    llm_server: Start,
) -> None:
    class Mute(NeverPongs):
        async def respond(self, ws, request, latest):  # type: ignore[no-untyped-def]
            return

    url = await llm_server(Mute())
    report = await simulate(fast_options(url, calls=1, turns=1, pong_timeout_s=0.25))

    assert report.reconnects_by_cause == {"keepalive": 2}
    assert report.calls_reconnected == 1
    assert report.calls_resumed == 0  # no turn was ever answered
    # Two reopened sockets, then a third loss the call did not survive.
    assert [e.cause for e in report.reconnect_events] == ["keepalive"] * 3
    assert report.reconnect_events[-1].reopened_at is None


async def test_a_clean_run_reports_no_reconnects(llm_server: Start) -> None:
    url = await llm_server(ReferenceServer())
    report = await simulate(fast_options(url, calls=2, turns=2))
    assert report.reconnects == 0
    assert report.reconnects_by_cause == {}
    assert report.reconnect_events == []
    assert "reconnects" not in render_html(judge(report)).split("<h2>Latency")[0]


async def test_reconnects_appear_in_the_reports(llm_server: Start) -> None:
    url = await llm_server(DropsMidCall())
    report = judge(await simulate(fast_options(url, calls=2, turns=3)))
    html = render_html(report)
    assert "2 calls reconnected, 2 resumed" in html
    assert "socket lost -&gt; first answered turn" in html

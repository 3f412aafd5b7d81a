"""The simulator against servers that break the protocol on purpose: each fault must be
reported the way Retell would see it, with the right violation kind or disconnection
reason, and nothing else."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from switchboard.sim.results import RunReport
from switchboard.sim.runner import simulate
from tests.fixtures.broken_servers import (
    AlwaysDrops,
    ClosesWith1000,
    ClosesWith1011,
    ClosesWithoutStatus,
    Handler,
    NeverCompletes,
    NeverPongs,
    NoBeginMessage,
    ReferenceServer,
    RepeatsGreeting,
    SendsBinary,
    SendsInvalidFrames,
    Silent,
    StaleAfterAnswering,
    StaleAfterSupersede,
    TalksAfterComplete,
    fast_options,
)

pytestmark = pytest.mark.integration

Start = Callable[[Handler], Awaitable[str]]


def only_violations(report: RunReport, *kinds: str) -> None:
    assert set(report.violations) == set(kinds), report.violation_samples


async def test_frame_for_superseded_id_after_answering_the_newer_one_is_stale(
    llm_server: Start,
) -> None:
    url = await llm_server(StaleAfterAnswering())
    # Even a huge grace does not excuse it: frames are ordered, so the server had read the
    # newer request (it answered it) before sending for the older id.
    report = await simulate(
        fast_options(url, calls=2, turns=2, barge_in_rate=1.0, stale_grace_ms=60_000.0)
    )

    only_violations(report, "stale_frame")
    assert report.violations["stale_frame"] == 4  # one per barge-in
    assert report.stale_in_grace == 0
    sample = report.violation_samples[0]
    assert "already answered a newer request" in sample.detail
    barge_in = {k.kind: k for k in report.per_kind}["barge_in"]
    assert barge_in.turns == 4
    assert report.calls_failed == {}


async def test_frame_for_superseded_id_later_than_the_grace_is_stale(llm_server: Start) -> None:
    url = await llm_server(StaleAfterSupersede())
    # The server sends the stale chunk after reading the newer request, so it arrives
    # strictly after that request was sent: with no grace, it is late.
    report = await simulate(
        fast_options(url, calls=2, turns=2, barge_in_rate=1.0, stale_grace_ms=0.0)
    )

    only_violations(report, "stale_frame")
    assert report.violations["stale_frame"] == 4
    assert "ms after response_id" in report.violation_samples[0].detail


async def test_in_flight_frames_within_the_grace_are_only_counted(llm_server: Start) -> None:
    url = await llm_server(StaleAfterSupersede())
    report = await simulate(
        fast_options(url, calls=2, turns=2, barge_in_rate=1.0, stale_grace_ms=60_000.0)
    )

    assert report.violations == {}
    assert report.stale_in_grace == 4
    assert report.frames_dropped == 4
    assert {k.kind: k.turns for k in report.per_kind}["barge_in"] == 4


async def test_missing_content_complete(llm_server: Start) -> None:
    url = await llm_server(NeverCompletes())
    report = await simulate(fast_options(url, calls=2, turns=2, turn_timeout_s=0.3))

    only_violations(report, "missing_content_complete")
    assert report.violations["missing_content_complete"] == 4
    assert report.calls_failed == {}
    response = {k.kind: k for k in report.per_kind}["response"]
    assert response.ttfb.count == 4  # content came, completion never did
    assert response.turns == 0


async def test_server_that_never_pongs(llm_server: Start) -> None:
    class Mute(NeverPongs):
        """Also never answers, so each call outlives its keepalive windows whatever the
        timing; the unanswered request is not the fault under test (turn timeout 10 s)."""

        async def respond(self, ws, request, latest):  # type: ignore[no-untyped-def]
            return

    server = Mute()
    url = await llm_server(server)
    report = await simulate(fast_options(url, calls=2, turns=1, pong_timeout_s=0.25))

    only_violations(report, "no_pong")
    assert report.violations["no_pong"] == 2  # once per call
    # 5 s without a pong closes the socket; after two such reconnects the call is lost.
    assert report.calls_failed == {"error_llm_websocket_lost_connection": 2}
    assert report.reconnects == 4
    assert server.seen.connections == 6
    assert server.seen.pings > 0
    # The request each lost socket left unanswered is asked again, under a new id.
    assert sorted(r["response_id"] for r in server.seen.requests) == [1, 1, 2, 2, 3, 3]


async def test_binary_frame_is_corrupt_payload(llm_server: Start) -> None:
    server = SendsBinary()
    url = await llm_server(server)
    report = await simulate(fast_options(url, calls=3, turns=2))

    assert report.calls_failed == {"error_llm_websocket_corrupt_payload": 3}
    only_violations(report, "binary_frame")
    assert server.seen.close_codes == [1007, 1007, 1007]  # Retell closes with 1007


async def test_close_1011_is_runtime_error(llm_server: Start) -> None:
    url = await llm_server(ClosesWith1011())
    report = await simulate(fast_options(url, calls=3, turns=2))

    assert report.calls_failed == {"error_llm_websocket_runtime": 3}
    assert report.reconnects == 0
    assert report.violations == {}


async def test_close_1000_is_agent_hangup_not_a_failure(llm_server: Start) -> None:
    url = await llm_server(ClosesWith1000())
    report = await simulate(fast_options(url, calls=3, turns=2))

    assert report.calls_failed == {}
    assert report.calls_completed == 3
    assert report.calls_ended == {"agent_hangup": 3}
    assert report.violations == {}


async def test_close_without_status_is_open_error(llm_server: Start) -> None:
    url = await llm_server(ClosesWithoutStatus())
    report = await simulate(fast_options(url, calls=2, turns=1))

    assert report.calls_failed == {"error_llm_websocket_open": 2}  # spec 1.9: 1005 mid-call


async def test_no_begin_message(llm_server: Start) -> None:
    server = NoBeginMessage()
    url = await llm_server(server)
    report = await simulate(fast_options(url, calls=2, turns=2, begin_timeout_s=0.3))

    only_violations(report, "no_begin_message")
    assert report.violations["no_begin_message"] == 2
    assert server.seen.requests == []  # Retell never lets the agent speak without it
    assert report.turns == 0


async def test_server_that_never_accepts(silent_server: tuple[str, Silent]) -> None:
    url, silent = silent_server
    report = await simulate(
        fast_options(url, calls=2, turns=1, open_timeout_s=0.2, connect_retry_delay_s=0.01)
    )

    assert report.calls_failed == {"error_llm_websocket_open": 2}
    assert report.calls_completed == 0
    assert silent.connections == 6  # three attempts per call
    assert report.connect.count == 0


async def test_nothing_listening_is_open_error(llm_server: Start) -> None:
    from tests.fixtures.ports import free_port

    url = f"ws://127.0.0.1:{free_port()}/llm-websocket"
    report = await simulate(fast_options(url, calls=1, turns=1))
    assert report.calls_failed == {"error_llm_websocket_open": 1}


async def test_abnormal_closes_beyond_four_reconnects_are_runtime(llm_server: Start) -> None:
    server = AlwaysDrops()
    url = await llm_server(server)
    report = await simulate(fast_options(url, calls=1, turns=2))

    assert report.calls_failed == {"error_llm_websocket_runtime": 1}
    assert report.reconnects == 4
    assert server.seen.connections == 5
    assert len(set(server.seen.call_ids)) == 1  # every reconnect is the same call


async def test_invalid_frames_are_dropped_and_counted(llm_server: Start) -> None:
    url = await llm_server(SendsInvalidFrames())
    report = await simulate(fast_options(url, calls=1, turns=2))

    only_violations(report, "invalid_frame")
    assert report.violations["invalid_frame"] == 4
    details = " ".join(v.detail for v in report.violation_samples)
    assert "content_complete" in details
    assert "malformed JSON" in details
    assert report.calls_failed == {}
    assert {k.kind: k.turns for k in report.per_kind}["response"] == 2  # the valid answers


async def test_content_after_complete_and_unknown_ids(llm_server: Start) -> None:
    url = await llm_server(TalksAfterComplete())
    report = await simulate(fast_options(url, calls=1, turns=1))

    only_violations(report, "content_after_complete", "unknown_response_id")
    unknown = next(v for v in report.violation_samples if v.kind == "unknown_response_id")
    assert unknown.response_id == 51


async def test_greeting_repeated_after_reconnect(llm_server: Start) -> None:
    url = await llm_server(RepeatsGreeting())
    report = await simulate(fast_options(url, calls=1, turns=2))

    only_violations(report, "repeated_greeting")
    assert report.reconnects == 1


async def test_reference_server_is_clean_against_the_same_checks(llm_server: Start) -> None:
    """The control for every test above: the same options, a correct server, nothing found."""
    url = await llm_server(ReferenceServer())
    report = await simulate(
        fast_options(url, calls=3, turns=3, barge_in_rate=1.0, turn_timeout_s=5.0)
    )
    assert report.violations == {}
    assert report.calls_failed == {}

"""The simulator against a correct server: nothing is reported, and what the server
receives is Retell's protocol as the spec describes it."""

from __future__ import annotations

import asyncio
import json
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from switchboard.protocol import FrameDecoder, ReminderRequired, ResponseRequired
from switchboard.sim.runner import Simulation, simulate
from switchboard.sim.scenario import parse_scenario
from switchboard.sim.verdict import judge
from tests.fixtures.broken_servers import (
    TRANSFER_TO,
    DropsFirstSocket,
    Handler,
    Interrupts,
    ReferenceServer,
    ToolsAndExtras,
    fast_options,
)

pytestmark = pytest.mark.integration

Start = Callable[[Handler], Awaitable[str]]


def frames_by_call(server: ReferenceServer) -> dict[str, list[dict[str, Any]]]:
    calls: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for call_id, raw in server.seen.frames:
        calls[call_id].append(json.loads(raw))
    return calls


async def test_reference_server_passes_with_zero_violations(llm_server: Start) -> None:
    server = ReferenceServer()
    url = await llm_server(server)
    report = await simulate(
        fast_options(
            url,
            calls=20,
            turns=4,
            think_ms=10.0,
            barge_in_rate=0.5,
            reminder_rate=0.3,
            seed=3,
            # The reference server never sends for an id after reading a newer one, so any
            # such frame was in flight; on a busy machine that can take far over the
            # default 25 ms. The grace itself is tested in test_sim_broken_servers.
            stale_grace_ms=60_000.0,
        )
    )

    assert report.violations == {}, report.violation_samples
    assert report.calls_failed == {}
    assert report.calls_started == report.calls_completed == 20
    kinds = {k.kind: k for k in report.per_kind}
    assert set(kinds) == {"greeting", "response", "reminder", "barge_in"}
    assert kinds["greeting"].turns == 20
    assert all(k.ttfb.count and k.ttc.p50_ms >= k.ttfb.p50_ms for k in kinds.values())
    assert report.turns == sum(kinds[k].turns for k in ("response", "reminder", "barge_in"))
    assert report.connect.count == 20
    assert report.greeting.count == 20
    assert report.pong_rtt.count > 0
    assert report.client.loop_lag is not None
    assert report.client.loop_lag.count > 0
    judged = judge(report)
    assert judged.passed, judged.verdict_reasons


async def test_what_the_server_receives_follows_the_spec(llm_server: Start) -> None:
    server = ReferenceServer()
    url = await llm_server(server)
    await simulate(
        fast_options(url, calls=3, turns=4, barge_in_rate=0.5, reminder_rate=0.5, seed=5)
    )

    decoder = FrameDecoder()
    calls = frames_by_call(server)
    assert len(calls) == 3
    for call_id, frames in calls.items():
        for frame in frames:  # typed, strict decode: every field known, every type right
            decoder.decode(json.dumps(frame))
        assert decoder.unknown_fields == []

        details = [f for f in frames if f["interaction_type"] == "call_details"]
        assert len(details) == 1  # asked for in config, sent right away
        call = details[0]["call"]
        assert call["call_id"] == call_id
        assert len(call_id) == 32
        assert call["call_status"] == "registered"
        assert call["call_type"] == "phone_call"
        assert call["direction"] == "inbound"
        assert call["from_number"].startswith("+1")
        assert call["to_number"].startswith("+1")
        assert "customer_name" in call["retell_llm_dynamic_variables"]

        requests = [f for f in frames if "response_id" in f]
        ids = [r["response_id"] for r in requests]
        assert ids == list(range(1, len(ids) + 1))  # auto-incrementing per call

        transcript_lengths = [len(f["transcript"]) for f in frames if "transcript" in f]
        assert transcript_lengths == sorted(transcript_lengths)  # never shrinks: full each time
        first = next(f for f in frames if "transcript" in f)
        assert first["transcript"][0]["role"] == "agent"  # the greeting
        assert first["transcript"][0]["content"].startswith("Hi ")

        for frame in frames:
            for utterance in frame.get("transcript", []):
                starts = [w["start"] for w in utterance["words"]]
                assert starts == sorted(starts)
                assert [w["word"] for w in utterance["words"]] == utterance["content"].split()


async def test_partials_grow_word_by_word_before_each_request(llm_server: Start) -> None:
    server = ReferenceServer()
    url = await llm_server(server)
    await simulate(fast_options(url, calls=1, turns=3))

    frames = next(iter(frames_by_call(server).values()))
    decoded = [FrameDecoder().decode(json.dumps(f)) for f in frames]
    requests = [i for i, m in enumerate(decoded) if isinstance(m, ResponseRequired)]
    assert len(requests) == 3
    for index in requests:
        request = frames[index]
        said = request["transcript"][-1]
        assert said["role"] == "user"
        words = said["content"].split()
        partials = frames[index - len(words) : index]
        assert [f["interaction_type"] for f in partials] == ["update_only"] * len(words)
        assert partials[0]["turntaking"] == "user_turn"
        grown = [p["transcript"][-1]["content"] for p in partials]
        assert grown == [" ".join(words[:n]) for n in range(1, len(words) + 1)]
    # Once the agent starts answering, Retell says so.
    assert any(f.get("turntaking") == "agent_turn" for f in frames)


async def test_reminders_follow_agent_speech_and_carry_the_transcript(llm_server: Start) -> None:
    server = ReferenceServer()
    url = await llm_server(server)
    report = await simulate(fast_options(url, calls=1, turns=3, reminder_rate=1.0))

    assert report.violations == {}
    frames = next(iter(frames_by_call(server).values()))
    decoded = [FrameDecoder().decode(json.dumps(f)) for f in frames]
    reminders = [m for m in decoded if isinstance(m, ReminderRequired)]
    assert len(reminders) == 3
    for reminder in reminders:
        assert reminder.transcript[-1].role == "agent"  # the caller said nothing since
    assert {k.kind: k.turns for k in report.per_kind}["reminder"] == 3


async def test_reconnect_after_abnormal_close_continues_the_same_call(llm_server: Start) -> None:
    server = DropsFirstSocket()
    url = await llm_server(server)
    report = await simulate(fast_options(url, calls=2, turns=2))

    assert report.violations == {}
    assert report.calls_failed == {}
    assert report.calls_ended == {"user_hangup": 2}
    assert report.reconnects == 2
    assert sorted(set(server.seen.call_ids)) == sorted(server.seen.call_ids[:2])
    for call_id, frames in frames_by_call(server).items():
        assert server.seen.call_ids.count(call_id) == 2  # same URL, same call id
        requests = [f for f in frames if f["interaction_type"] == "response_required"]
        # The request the dropped socket never answered is asked again with a new id and
        # the full transcript so far: greeting and the caller's words.
        assert [r["response_id"] for r in requests] == [1, 2, 3]
        assert requests[1]["transcript"] == requests[0]["transcript"]
        assert [u["role"] for u in requests[2]["transcript"]] == ["agent", "user", "agent", "user"]
    assert sum(1 for f in server.seen.frames if b"call_details" in _raw(f[1])) == 4


def _raw(data: str | bytes) -> bytes:
    return data.encode() if isinstance(data, str) else data


async def test_tool_calls_reach_transcript_with_tool_calls(llm_server: Start) -> None:
    server = ToolsAndExtras()
    url = await llm_server(server)
    report = await simulate(fast_options(url, calls=1, turns=2))

    assert report.violations == {}
    assert report.server_messages["tool_call_invocation"] == 2
    assert report.server_messages["tool_call_result"] == 2
    assert report.server_messages["update_agent"] == 2
    assert report.server_messages["metadata"] == 2
    frames = next(iter(frames_by_call(server).values()))
    last = [f for f in frames if f["interaction_type"] == "response_required"][-1]
    roles = [item["role"] for item in last["transcript_with_tool_calls"]]
    # Placed where they happened: after the caller's words that the agent was answering.
    assert roles == [
        "agent",
        "user",
        "tool_call_invocation",
        "tool_call_result",
        "agent",
        "user",
    ]
    assert [u["role"] for u in last["transcript"]] == ["agent", "user", "agent", "user"]
    assert all(
        "transcript_with_tool_calls" in f
        for f in frames
        if f["interaction_type"] in ("update_only", "response_required")
    )


async def test_agent_interrupt_cancels_the_response_in_flight(llm_server: Start) -> None:
    server = Interrupts()
    url = await llm_server(server)
    scenario = parse_scenario("turns:\n - say: hello\n - say: ok goodbye\n", "cut.yaml")
    report = await Simulation(fast_options(url, calls=0), [scenario]).run()

    assert report.violations == {"expectation_failed": 2}  # both turns were cut off
    assert all("cut off by agent_interrupt" in f for f in report.scenarios[0].failures)
    assert report.server_messages["agent_interrupt"] == 4
    assert report.frames_dropped == 2  # the cancelled ids' completions: dropped, no violation
    assert report.calls_ended == {"agent_hangup": 1}  # the second interrupt said end_call
    requests = [
        json.loads(raw)
        for _, raw in server.seen.frames
        if b"response_required" in (raw if isinstance(raw, bytes) else raw.encode())
    ]
    # The interrupt was spoken: it is in the transcript of the next request.
    spoken = [u["content"] for u in requests[1]["transcript"] if u["role"] == "agent"]
    assert spoken[1:] == ["Sorry to cut in, one moment."]


async def test_no_barge_in_over_content_that_forbids_it(llm_server: Start) -> None:
    class Uninterruptible(ReferenceServer):
        async def send_response(self, ws, rid, content, complete, **extra):  # type: ignore[no-untyped-def]
            await super().send_response(
                ws, rid, content, complete, no_interruption_allowed=True, **extra
            )

    url = await llm_server(Uninterruptible())
    report = await simulate(fast_options(url, calls=2, turns=3, barge_in_rate=1.0))

    kinds = {k.kind: k.turns for k in report.per_kind}
    assert "barge_in" not in kinds
    assert kinds["response"] == 6
    assert report.violations == {}


async def test_actions_end_the_call_as_retell_does(llm_server: Start) -> None:
    server = ReferenceServer()
    url = await llm_server(server)
    goodbye = parse_scenario(
        "turns:\n - say: hello\n - say: ok goodbye\n   expect: {action: end_call}\n"
        " - say: never said\n",
        "goodbye.yaml",
    )
    transfer = parse_scenario(
        f"turns:\n - say: a real person please\n"
        f"   expect: {{action: transfer_number, transfer_number: '{TRANSFER_TO}'}}\n",
        "transfer.yaml",
    )
    simulation = Simulation(fast_options(url, calls=0), [goodbye, transfer])
    report = await simulation.run()

    assert report.calls_ended == {"agent_hangup": 1, "call_transfer": 1}
    assert report.calls_failed == {}
    assert report.scenarios[0].name == "goodbye"
    assert not report.scenarios[0].passed  # the third turn never happened
    assert "never happened" in report.scenarios[0].failures[0]
    assert report.scenarios[1].passed
    assert report.violations == {"expectation_failed": 1}


async def test_duration_keeps_calls_going_until_stopped(llm_server: Start) -> None:
    simulation: Simulation | None = None

    class Counting(ReferenceServer):
        async def on_open(self, ws, call_id):  # type: ignore[no-untyped-def]
            if self.seen.connections == 9 and simulation is not None:
                simulation.stop()  # as the duration timer would
            await super().on_open(ws, call_id)

    server = Counting()
    url = await llm_server(server)
    simulation = Simulation(fast_options(url, calls=3, turns=2, duration_s=3600.0))
    report = await asyncio.wait_for(simulation.run(), 30)

    assert report.calls_started >= 9  # each caller placed call after call
    assert report.calls_completed == report.calls_started
    assert report.violations == {}

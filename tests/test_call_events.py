"""Events come from the running server: a real socket, the session's ``CallEvents`` sink,
the outbox and an in-process bus; webhooks are re-published."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import msgspec

from switchboard.agents.base import TurnKind
from switchboard.calls.generation import Generation
from switchboard.calls.publisher import caller_line, end_how
from switchboard.events.buses.memory import MemoryBus
from switchboard.events.codec import decode
from switchboard.events.types import CallEnded, CallStarted, Event, RetellWebhook, TurnCompleted
from switchboard.protocol.inbound import Utterance
from switchboard.protocol.signature import SIGNATURE_HEADER, sign
from tests.fixtures.agents import EchoAgent, FailingAgent, GatedAgent
from tests.fixtures.conditions import eventually
from tests.fixtures.server import retell

KEY = "test-key"


def _events(srv: Any) -> list[Event]:
    outbox = srv.app.node.outbox
    assert isinstance(outbox.bus, MemoryBus)
    return [decode(m) for m in outbox.bus.log]


def _of(events: list[Event], cls: type) -> list[Any]:
    return [e.data for e in events if isinstance(e.data, cls)]


async def test_a_call_publishes_started_each_turn_and_ended(serve: Any, tmp_path: Path) -> None:
    settings = {"call_details": False, "bus_url": "memory://", "outbox_dir": tmp_path}
    async with serve(EchoAgent(), **settings) as srv:
        async with retell(srv.ws_url, "call-ev1") as peer:
            await peer.complete(0)
            await peer.request(1, "what are your hours")
            await peer.complete(1)
        await eventually(lambda: bool(_of(_events(srv), CallEnded)))
        events = _events(srv)
    assert {e.call_id for e in events} == {"call-ev1"}
    assert [e.type for e in events] == [
        "call.started",
        "call.turn_completed",
        "call.turn_completed",
        "call.ended",
    ]
    started, greeting, turn, ended = (e.data for e in events)
    assert isinstance(started, CallStarted)
    assert not started.resumed
    assert isinstance(greeting, TurnCompleted)
    assert greeting.kind == "greeting"
    assert greeting.reply == "Hello from the clinic."
    assert isinstance(turn, TurnCompleted)
    assert turn.kind == "response"
    assert turn.caller_line == "what are your hours"
    assert turn.reply == "You said: what are your hours (turn 1)"
    assert turn.ttfb_ms is not None
    assert turn.ttc_ms is not None
    assert 0 < turn.ttfb_ms <= turn.ttc_ms
    assert turn.fallback_reason is None
    assert not turn.superseded
    assert isinstance(ended, CallEnded)
    assert ended.how == "closed"
    assert ended.turns == 1


async def test_superseded_and_fallback_turns_say_so(serve: Any, tmp_path: Path) -> None:
    agent = GatedAgent()
    settings = {"call_details": False, "bus_url": "memory://", "outbox_dir": tmp_path}
    async with serve(agent, **settings) as srv:
        async with retell(srv.ws_url, "call-ev2") as peer:
            await peer.complete(0)
            await peer.request(1, "first")
            await agent.started_event(1).wait()
            await peer.request(2, "second")
            await agent.started_event(2).wait()
            agent.release.set()
            await peer.complete(2)
        await eventually(lambda: bool(_of(_events(srv), CallEnded)))
        turns = _of(_events(srv), TurnCompleted)
    first = next(t for t in turns if t.response_id == 1)
    second = next(t for t in turns if t.response_id == 2)
    assert first.superseded
    assert first.ttc_ms is None
    assert first.caller_line == "first"
    assert first.reply == "Thinking about 1."
    assert not second.superseded
    assert second.reply == "Thinking about 2.Answer 2."

    async with serve(FailingAgent(), **settings | {"outbox_dir": tmp_path / "b"}) as srv:
        async with retell(srv.ws_url, "call-ev3") as peer:
            await peer.complete(0)
            await peer.request(1, "hello")
            await peer.complete(1)
        await eventually(lambda: bool(_of(_events(srv), CallEnded)))
        turns = _of(_events(srv), TurnCompleted)
    failed = [t for t in turns if t.fallback_reason]
    assert failed
    assert failed[-1].fallback_reason == "agent_error"
    assert failed[-1].reply.startswith("Sorry")


async def test_verified_webhooks_are_republished(serve: Any, tmp_path: Path) -> None:
    settings = {"bus_url": "memory://", "outbox_dir": tmp_path, "retell_api_key": KEY}
    body = msgspec.json.encode(
        {
            "event": "call_analyzed",
            "call": {"call_id": "call-wh", "call_analysis": {"user_sentiment": "Negative"}},
        }
    )
    async with serve(EchoAgent(), **settings) as srv:
        async with httpx.AsyncClient(base_url=srv.http_url, trust_env=False) as client:
            signature = sign(body, KEY, time.time_ns() // 1_000_000)
            response = await client.post(
                "/webhook", content=body, headers={SIGNATURE_HEADER: signature}
            )
            assert response.status_code == 204
        await eventually(lambda: bool(_of(_events(srv), RetellWebhook)))
        (event,) = [e for e in _events(srv) if isinstance(e.data, RetellWebhook)]
    assert event.type == "retell.call_analyzed"
    assert event.call_id == "call-wh"
    assert event.data.analysis == {"user_sentiment": "Negative"}  # type: ignore[attr-defined]


def test_caller_line_is_the_last_user_utterance() -> None:
    transcript = [
        Utterance(role="agent", content="Hi"),
        Utterance(role="user", content="book a table"),
        Utterance(role="agent", content="For when?"),
    ]
    assert caller_line(transcript) == "book a table"
    assert caller_line([]) == ""


def test_end_how_follows_what_the_last_turn_asked() -> None:
    done = Generation(3, TurnKind.RESPONSE, completed=True, end_call=True)
    moved = Generation(3, TurnKind.RESPONSE, completed=True, transfer_number="+1555")
    plain = Generation(3, TurnKind.RESPONSE, completed=True)
    assert end_how(done, fenced=False, aborted=False) == "agent_ended"
    assert end_how(moved, fenced=False, aborted=False) == "transferred"
    assert end_how(plain, fenced=False, aborted=True) == "dropped"
    assert end_how(plain, fenced=True, aborted=True) == "handed_off"
    assert end_how(None, fenced=False, aborted=False) == "closed"


async def test_outbox_counters_are_on_the_metrics_page(serve: Any, tmp_path: Path) -> None:
    settings = {"call_details": False, "bus_url": "memory://", "outbox_dir": tmp_path}
    async with serve(EchoAgent(), **settings) as srv:
        async with retell(srv.ws_url, "call-m") as peer:
            await peer.complete(0)
        await eventually(lambda: srv.app.node.outbox.stats.sent >= 2)
        async with httpx.AsyncClient(base_url=srv.http_url, trust_env=False) as client:
            text = (await client.get("/metrics")).text
    assert 'switchboard_outbox_events_total{outcome="sent"}' in text
    assert "switchboard_outbox_spilling 0.0" in text

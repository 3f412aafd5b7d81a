"""Traces from a running server: one call over a real socket, with tracing on, gives a
call span, a span per turn under it, and under each turn the agent, the Redis save and
the outbox put; with tracing off, none of that is made."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from switchboard import tracing
from tests.fixtures.agents import EchoAgent
from tests.fixtures.conditions import eventually
from tests.fixtures.server import retell

pytestmark = pytest.mark.integration


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_provider(provider)
    try:
        yield exporter
    finally:
        tracing.shutdown()


def _children(all_spans: tuple[ReadableSpan, ...], parent: ReadableSpan) -> list[str]:
    return sorted(
        s.name
        for s in all_spans
        if s.parent is not None and s.parent.span_id == parent.context.span_id
    )


async def test_a_call_is_a_trace_of_turns_with_their_agent_save_and_outbox_spans(
    serve: Any,
    spans: InMemorySpanExporter,
    tmp_path: Path,
    redis_server_url: str,
    redis_namespace: str,
) -> None:
    settings = {"call_details": False, "bus_url": "memory://", "outbox_dir": tmp_path}
    settings |= {"redis_url": redis_server_url, "redis_namespace": redis_namespace}
    async with serve(EchoAgent(), profile="distributed", **settings) as srv:
        async with retell(srv.ws_url, "call-tr1") as peer:
            await peer.complete(0)
            await peer.request(1, "what are your hours")
            await peer.complete(1)
        await eventually(lambda: any(s.name == "call" for s in spans.get_finished_spans()))
    finished = spans.get_finished_spans()
    (call,) = [s for s in finished if s.name == "call"]
    assert call.attributes is not None
    assert call.attributes["retell.call_id"] == "call-tr1"
    assert call.attributes["switchboard.turns"] == 1
    turns = {s.name: s for s in finished if s.name.startswith("turn ")}
    assert set(turns) == {"turn greeting", "turn response"}
    assert _children(finished, call) == ["turn greeting", "turn response"]
    response = turns["turn response"]
    assert response.attributes is not None
    assert response.attributes["retell.response_id"] == 1
    assert response.attributes["switchboard.ttfb_ms"] > 0
    assert response.attributes["switchboard.turn.completed"] is True
    assert _children(finished, response) == ["agent", "outbox.put", "redis.save"]
    assert len({s.context.trace_id for s in finished}) == 1


async def test_with_tracing_off_no_tracing_code_runs(
    serve: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Off, the turn path never calls into ``tracing`` past its flag (each hook raises
    here if it is reached)."""

    def reached(*args: object, **kwargs: object) -> None:
        raise AssertionError("a tracing hook ran with tracing off")

    for hook in ("start_call", "start_turn", "child", "end"):
        monkeypatch.setattr(tracing, hook, reached)
    assert tracing.ENABLED is False
    settings = {"call_details": False, "bus_url": "memory://", "outbox_dir": tmp_path}
    async with (
        serve(EchoAgent(), **settings) as srv,
        retell(srv.ws_url, "call-tr2") as peer,
    ):
        await peer.complete(0)
        await peer.request(1, "hello")
        frames = await peer.complete(1)
    assert frames

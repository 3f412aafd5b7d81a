"""Supervisor alerts, and a decision left pending by a crash carried out on the next start.
In process, against a real HTTP receiver and a real Redis for the command client."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from switchboard.control.client import CallControl
from switchboard.events.bus import Batch
from switchboard.events.buses.memory import MemoryBus
from switchboard.events.codec import decode
from switchboard.events.types import CallEscalated, TurnCompleted, make_event
from switchboard.services.escalation.rules import parse_rules
from switchboard.services.escalation.service import Escalation, EscalationStore

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def receiver(status: int = 200) -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    got: list[dict[str, Any]] = []

    async def alerts(request: Request) -> Response:
        got.append(msgspec.json.decode(await request.body()))
        return JSONResponse({}, status_code=status)

    app = Starlette(routes=[Route("/alerts", alerts, methods=["POST"])])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"http://127.0.0.1:{port}/alerts", got
    finally:
        server.should_exit = True
        await task
        sock.close()


def _rules(url: str) -> Any:
    return parse_rules(
        f"supervisor_webhook: {url!r}\n"
        "rules: [{name: upset, when: negative_language, count: 1, action: alert}]\n"
    )


def _angry(n: int) -> Any:
    data = TurnCompleted(response_id=n, kind="response", caller_line="This is ridiculous!")
    return make_event(data, call_id="call-angry", source="node/n")


async def test_a_pending_decision_is_carried_out_once_on_the_next_start(
    tmp_path: Path, redis_server_url: str, redis_namespace: str
) -> None:
    control = CallControl.from_url(redis_server_url, namespace=redis_namespace)
    bus = MemoryBus()
    async with receiver() as (url, got), httpx.AsyncClient(trust_env=False) as http:
        rules = _rules(url)
        store = await EscalationStore.open(tmp_path / "esc.db")
        first = _angry(1)
        decided = await store.decide(rules, [first])  # committed; then the process died
        assert [d.rule for d in decided] == ["upset"]
        assert got == []
        await store.close()

        store = await EscalationStore.open(tmp_path / "esc.db")
        handler = Escalation(rules, store, control, bus, http)
        await handler.resume_pending()
        assert [a["call_id"] for a in got] == ["call-angry"]
        await handler.handle(Batch([first, _angry(2)]))  # the redelivery, and a second line
        assert len(got) == 1
        assert await store.rows() == [("call-angry", "upset", "alert", "done")]
        await handler.resume_pending()
        assert len(got) == 1
        await handler.stop()
        await store.close()
    (event,) = [decode(m) for m in bus.log]
    assert isinstance(event.data, CallEscalated)
    assert (event.data.rule, event.data.action) == ("upset", "alert")
    assert event.data.trigger_event_id == first.id
    await control.aclose()


async def test_a_refused_alert_is_recorded_as_failed(
    tmp_path: Path, redis_server_url: str, redis_namespace: str
) -> None:
    control = CallControl.from_url(redis_server_url, namespace=redis_namespace)
    bus = MemoryBus()
    async with receiver(status=500) as (url, got), httpx.AsyncClient(trust_env=False) as http:
        store = await EscalationStore.open(tmp_path / "esc.db")
        handler = Escalation(_rules(url), store, control, bus, http)
        await handler.handle(Batch([_angry(1)]))
        assert len(got) == 1
        assert await store.rows() == [("call-angry", "upset", "alert", "failed")]
        await store.close()
    (event,) = [decode(m) for m in bus.log]
    assert event.data.action == "alert_failed"  # type: ignore[attr-defined]
    await control.aclose()


async def test_a_transfer_for_a_call_no_node_holds_fails_cleanly(
    tmp_path: Path, redis_server_url: str, redis_namespace: str
) -> None:
    control = CallControl.from_url(redis_server_url, namespace=redis_namespace)
    rules = parse_rules(
        "transfer_number: '+1555'\nrules: [{name: h, when: asks_for_human, count: 1}]\n"
    )
    bus = MemoryBus()
    async with httpx.AsyncClient(trust_env=False) as http:
        store = await EscalationStore.open(tmp_path / "esc.db")
        handler = Escalation(rules, store, control, bus, http)
        data = TurnCompleted(response_id=1, kind="response", caller_line="a real person please")
        await handler.handle(Batch([make_event(data, call_id="gone", source="n")]))
        assert await store.rows() == [("gone", "h", "transfer", "failed")]
        await store.close()
    (event,) = [decode(m) for m in bus.log]
    assert "not live on any node" in event.data.detail  # type: ignore[attr-defined]
    await control.aclose()

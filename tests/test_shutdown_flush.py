"""The second signal's shutdown, in-process: calls handed off, queued webhooks still delivered."""

from __future__ import annotations

import asyncio
import signal
import socket
import time

import httpx
import msgspec
import pytest

from switchboard.config import Settings
from switchboard.protocol.signature import sign
from switchboard.protocol.webhook import WebhookEvent
from switchboard.server.app import SwitchboardApp
from switchboard.server.run import DrainingServer, uvicorn_config
from tests.fixtures.agents import EchoAgent
from tests.fixtures.conditions import eventually
from tests.fixtures.server import retell

pytestmark = pytest.mark.integration

KEY = "flush-test-key"
WAIT_S = 20.0


class Gate:
    """Holds each webhook event until opened."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.entered = asyncio.Event()
        self.delivered: list[str] = []

    async def __call__(self, event: WebhookEvent) -> None:
        self.entered.set()
        await self.open.wait()
        self.delivered.append(event.call_id or "")


async def test_second_signal_still_delivers_queued_webhooks() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    settings = Settings(port=port, call_details=False, retell_api_key=KEY, drain_timeout_s=600)
    app = SwitchboardApp(settings, EchoAgent())
    gate = Gate()
    app.webhooks.subscribe(gate)
    server = DrainingServer(uvicorn_config(app, settings), app, settings.drain_timeout_s)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await eventually(lambda: server.started, WAIT_S)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            for call_id in ("held", "queued"):
                body = msgspec.json.encode({"event": "call_ended", "call": {"call_id": call_id}})
                signature = sign(body, KEY, time.time_ns() // 1_000_000)
                response = await http.post(
                    "/webhook", content=body, headers={"x-retell-signature": signature}
                )
                assert response.status_code == 204
        await asyncio.wait_for(gate.entered.wait(), WAIT_S)
        async with retell(f"ws://127.0.0.1:{port}/llm-websocket", "live") as peer:
            await peer.complete(0)
            server.handle_exit(signal.SIGTERM, None)
            await eventually(lambda: app.node.draining, WAIT_S)
            server.handle_exit(signal.SIGTERM, None)
            closed = await peer.closed()
            assert closed.rcvd is None, closed  # 1006: Retell reconnects elsewhere
        # The shutdown now waits on the queue; the subscriber finishes both events.
        await eventually(lambda: not app.webhooks.running, WAIT_S)
        assert not task.done()
        gate.open.set()
        await asyncio.wait_for(task, WAIT_S)
        assert gate.delivered == ["held", "queued"], gate.delivered
        assert app.webhooks.counters.dropped == 0
    finally:
        if not task.done():
            server.should_exit = True
            server.force_exit = True
            await asyncio.wait_for(task, WAIT_S)
        sock.close()

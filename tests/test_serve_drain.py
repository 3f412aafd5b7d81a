"""``switchboard serve`` as a real process: readiness, and the drain on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from websockets.asyncio.client import connect

from tests.fixtures.ports import free_port
from tests.fixtures.server import RetellPeer, handshake_status, spoken

pytestmark = pytest.mark.integration

DEADLINE = 20.0


@asynccontextmanager
async def serve_process(**env: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, int]]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "switchboard", "serve", "--port", str(port)],
        env={**os.environ, "SWITCHBOARD_CALL_DETAILS": "false", **env},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await until_status(port, 200)
        yield process, port
    finally:
        if process.returncode is None:
            process.kill()
        await asyncio.wait_for(process.wait(), DEADLINE)


async def until_status(port: int, status: int) -> None:
    """Poll ``/readyz`` until it answers ``status`` (the server may still be starting)."""
    async with httpx.AsyncClient() as http, asyncio.timeout(DEADLINE):
        while True:
            try:
                if (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code == status:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.02)


async def exit_code(process: asyncio.subprocess.Process) -> int:
    return await asyncio.wait_for(process.wait(), DEADLINE)


async def test_sigterm_stops_admission_and_lets_live_calls_finish() -> None:
    async with serve_process(SWITCHBOARD_DRAIN_TIMEOUT_S="60") as (process, port):
        url = f"ws://127.0.0.1:{port}/llm-websocket"
        async with connect(f"{url}/live") as ws:
            peer = RetellPeer(ws)
            await peer.complete(0)
            process.send_signal(signal.SIGTERM)
            await until_status(port, 503)
            assert await handshake_status(f"{url}/late") == 503
            await peer.request(1, "what are your opening hours")
            assert spoken(await peer.complete(1), 1)
            assert process.returncode is None  # still serving the live call
        assert await exit_code(process) == 0


async def test_drain_timeout_hands_calls_off_without_a_close_frame() -> None:
    async with serve_process(SWITCHBOARD_DRAIN_TIMEOUT_S="0.2") as (process, port):
        async with connect(f"ws://127.0.0.1:{port}/llm-websocket/handoff") as ws:
            peer = RetellPeer(ws)
            await peer.complete(0)
            process.send_signal(signal.SIGTERM)
            closed = await peer.closed()
            # No close frame: Retell sees 1006 and reconnects through the load balancer,
            # where a 1000/1001/1012 close would end the call.
            assert closed.rcvd is None
        assert await exit_code(process) == 0

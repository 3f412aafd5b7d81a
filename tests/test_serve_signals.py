"""``switchboard serve`` as a real process under hostile conditions: broken output streams,
a second signal during the drain, and what its log looks like."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect

from tests.fixtures.ports import free_port
from tests.fixtures.server import RetellPeer, handshake_status, spoken
from tests.test_serve_drain import DEADLINE, exit_code, until_status

pytestmark = pytest.mark.integration


@asynccontextmanager
async def serve_process(
    stdout: int, stderr: int, **env: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, int]]:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "switchboard", "serve", "--port", str(port)],
        env={**os.environ, "SWITCHBOARD_CALL_DETAILS": "false", **env},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
    )
    try:
        yield process, port
    finally:
        if process.returncode is None:
            process.kill()
        await asyncio.wait_for(process.wait(), DEADLINE)


def log_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of a JSON log; fails on a line that is not one JSON object."""
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    decoded = [json.loads(line) for line in lines]
    assert all(isinstance(d, dict) for d in decoded), lines
    return decoded


@pytest.mark.parametrize("when", ["before_start", "after_start"])
async def test_sigterm_drains_with_stdout_and_stderr_closed_by_their_reader(when: str) -> None:
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    readers = [out_r, err_r]
    try:
        async with serve_process(
            out_w, err_w, SWITCHBOARD_DRAIN_TIMEOUT_S="60", SWITCHBOARD_LOG_LEVEL="debug"
        ) as (process, port):
            os.close(out_w)
            os.close(err_w)
            if when == "before_start":
                # `switchboard serve 2>&1 | head -0`: nobody will ever read a line.
                for fd in readers:
                    os.close(fd)
                readers.clear()
            await until_status(port, 200)
            if when == "after_start":
                # `| head -5`: the reader took the first lines and left.
                for fd in readers:
                    os.close(fd)
                readers.clear()
            url = f"ws://127.0.0.1:{port}/llm-websocket"
            async with connect(f"{url}/live") as ws:
                peer = RetellPeer(ws)
                await peer.complete(0)
                process.send_signal(signal.SIGTERM)
                await until_status(port, 503)
                assert await handshake_status(f"{url}/late") == 503
                await peer.request(1, "what are your opening hours")
                assert spoken(await peer.complete(1), 1)
            assert await exit_code(process) == 0
    finally:
        for fd in readers:
            os.close(fd)


async def test_second_signal_hands_calls_off_and_still_shuts_down(tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        async with serve_process(
            asyncio.subprocess.DEVNULL,
            sink.fileno(),
            SWITCHBOARD_DRAIN_TIMEOUT_S="600",
            SWITCHBOARD_LOG_JSON="true",
        ) as (process, port):
            await until_status(port, 200)
            url = f"ws://127.0.0.1:{port}/llm-websocket"
            async with connect(f"{url}/one") as one, connect(f"{url}/two") as two:
                peers = [RetellPeer(one), RetellPeer(two)]
                for peer in peers:
                    await peer.complete(0)
                process.send_signal(signal.SIGTERM)
                await until_status(port, 503)  # draining, both calls still live
                process.send_signal(signal.SIGTERM)
                for peer in peers:
                    closed = await peer.closed()
                    # No close frame (1006): Retell reconnects elsewhere. A 1012 would end
                    # the call as an error.
                    assert closed.rcvd is None
            assert await exit_code(process) == 0
    events = [line["event"] for line in log_lines(log)]
    handed_off = events.index("second signal: calls handed off without waiting")
    # The lifespan shutdown still ran (queued webhooks flushed, agent and store closed).
    assert "switchboard stopped" in events[handed_off:], events


async def test_the_log_is_one_json_stream_at_the_configured_level(tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        async with serve_process(
            asyncio.subprocess.DEVNULL,
            sink.fileno(),
            SWITCHBOARD_LOG_JSON="true",
            SWITCHBOARD_LOG_LEVEL="warning",
            SWITCHBOARD_DRAIN_TIMEOUT_S="1",
        ) as (process, port):
            await until_status(port, 200)
            url = f"ws://127.0.0.1:{port}/llm-websocket"
            async with connect(f"{url}/noisy") as ws:
                peer = RetellPeer(ws)
                await peer.complete(0)
                for _ in range(50):
                    # (not an update: most of those are not decoded, docs/decisions.md)
                    await peer.send_raw('{"interaction_type":"ping_pong","timestamp":')
                await peer.send(interaction_type="ping_pong", timestamp=7)
                await peer.recv_until(lambda f: f.get("response_type") == "ping_pong")
            assert await handshake_status(f"{url}/a/b/c") == 404
            process.send_signal(signal.SIGTERM)
            assert await exit_code(process) == 0
    lines = log_lines(log)
    assert lines, "nothing logged"
    # Level filter everywhere: uvicorn's and our info lines are gone.
    assert {line["level"] for line in lines} <= {"warning", "error", "critical"}, lines
    malformed = [line for line in lines if line["event"] == "ignored malformed frame"]
    # 50 identical warnings of one call: a few lines, then a count of what was left out.
    assert 1 <= len(malformed) <= 5, malformed
    suppressed = [line for line in lines if line["event"] == "suppressed repeated log lines"]
    assert sum(line["count"] for line in suppressed) + len(malformed) == 50, lines
    for line in malformed:
        assert len(line["excerpt"]) <= 80

"""Slow and incomplete requests are bounded, and calls keep working while they arrive."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from switchboard.protocol.signature import sign
from tests.fixtures.agents import EchoAgent
from tests.fixtures.conditions import eventually
from tests.fixtures.server import retell, spoken

pytestmark = pytest.mark.integration

KEY = "slow-test-key"
WAIT_S = 20.0


def webhook_head(content_length: int, body: bytes = b"{}") -> bytes:
    signature = sign(body, KEY, 0)
    return (
        b"POST /webhook HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(content_length).encode() + b"\r\n"
        b"x-retell-signature: " + signature.encode() + b"\r\n\r\n"
    )


SLOW_STARTS = {
    "silent": b"",
    "partial_request_line": b"POST /webh",
    "partial_headers": b"POST /webhook HTTP/1.1\r\nhost: t\r\ncontent-le",
    "short_body": webhook_head(1000) + b'{"event":',
}


async def held_until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends before it closes the connection."""
    return await reader.read()


async def test_slow_sockets_are_closed_while_a_call_goes_on(serve: Any) -> None:
    async with serve(
        EchoAgent(),
        call_details=False,
        header_timeout_s=0.5,
        webhook_body_timeout_s=0.5,
        retell_api_key=KEY,
        webhook_max_pending_bodies=200,
    ) as srv:
        sockets = []
        for n in range(200):
            kind = list(SLOW_STARTS)[n % len(SLOW_STARTS)]
            reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
            writer.write(SLOW_STARTS[kind])
            await writer.drain()
            sockets.append((kind, reader, writer))
        try:
            async with retell(srv.ws_url, "during-attack") as peer:
                await peer.complete(0)
                for rid in (1, 2, 3):
                    await peer.request(rid, f"turn {rid}")
                    assert spoken(await peer.complete(rid), rid).startswith("You said: turn")
            answers = await asyncio.wait_for(
                asyncio.gather(*(held_until_closed(r) for _, r, _ in sockets)), WAIT_S
            )
        finally:
            for _, _, writer in sockets:
                writer.close()
        for (kind, _, _), answer in zip(sockets, answers, strict=True):
            assert answer.startswith(b"HTTP/1.1 408"), (kind, answer)
        rejected = srv.app.webhooks.counters.rejected
        assert rejected == {"body_timeout": 50}, rejected


async def test_a_body_dripped_a_byte_at_a_time_is_cut_off(serve: Any) -> None:
    async with serve(
        EchoAgent(), call_details=False, webhook_body_timeout_s=0.5, retell_api_key=KEY
    ) as srv:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        try:
            writer.write(webhook_head(10_000))
            status = asyncio.ensure_future(reader.readline())
            while not status.done():
                # The client's own pace (the attack itself), not a wait on the server.
                writer.write(b" ")
                await writer.drain()
                await asyncio.wait({status}, timeout=0.05)
            assert status.result().startswith(b"HTTP/1.1 408")
        finally:
            writer.close()
        assert srv.app.webhooks.counters.rejected == {"body_timeout": 1}


async def test_unverified_bodies_in_flight_are_capped_and_a_disconnect_is_clean(
    serve: Any,
) -> None:
    async with serve(
        EchoAgent(),
        call_details=False,
        webhook_body_timeout_s=60,
        retell_api_key=KEY,
        webhook_max_pending_bodies=10,
    ) as srv:
        receiver = srv.app.webhooks
        held = []
        for _ in range(10):
            reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
            writer.write(webhook_head(1000) + b"{")
            await writer.drain()
            held.append(writer)
        await eventually(lambda: receiver._pending_bodies == 10, WAIT_S)
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        try:
            writer.write(webhook_head(1000) + b"{")
            assert (await asyncio.wait_for(reader.readline(), WAIT_S)).startswith(b"HTTP/1.1 503")
        finally:
            writer.close()
        for writer in held:
            writer.close()
        # Clients gone mid-body: counted and logged in one line each, no traceback.
        await eventually(lambda: receiver._pending_bodies == 0, WAIT_S)
        assert receiver.counters.rejected == {"too_many_pending": 1, "client_disconnected": 10}

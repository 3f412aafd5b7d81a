"""The call socket's WebSocket layer end to end: the handshake, fragments, control
frames, closing handshakes and protocol violations, against a real server, with
websockets' client (the reference) or raw bytes where a client would refuse to misbehave.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from switchboard.server.websocket import parse_close
from tests.fixtures.agents import EchoAgent
from tests.fixtures.server import TIMEOUT, RetellPeer, retell, spoken

pytestmark = pytest.mark.integration


async def _raw_socket(port: int, path: str, **headers: str) -> tuple[Any, Any, bytes]:
    """Open a TCP connection, send an upgrade request, return (reader, writer, head)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    fields = {
        "Host": f"127.0.0.1:{port}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        "Sec-WebSocket-Version": "13",
    }
    fields.update({k.replace("_", "-"): v for k, v in headers.items()})
    head = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items() if v)
    writer.write((head + "\r\n").encode())
    response = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    return reader, writer, response


async def _server_frames(reader: Any) -> AsyncIterator[Frame]:
    """Frames the server sends, parsed by websockets, until the connection ends."""
    stream = StreamReader()
    while True:
        data = await asyncio.wait_for(reader.read(65536), TIMEOUT)
        if not data:
            return
        stream.feed_data(data)
        while True:
            parser = Frame.parse(stream.read_exact, mask=False)
            try:
                next(parser)
            except StopIteration as done:
                yield done.value
                continue
            break


async def _read_until_close(reader: Any) -> Frame | None:
    """Server frames up to its close frame (``None`` if the connection ends without one)."""
    async for frame in _server_frames(reader):
        if frame.opcode is Opcode.CLOSE:
            return frame
    return None


async def test_a_fragmented_request_is_one_message(serve: Any) -> None:
    async with serve(EchoAgent(), call_details=False) as srv, retell(srv.ws_url, "frag") as peer:
        await peer.complete(0)
        body = '{"interaction_type":"response_required","response_id":1,'
        rest = '"transcript":[{"role":"user","content":"in pieces","words":[]}]}'
        await peer.ws.send([body[:20], body[20:], rest])  # websockets sends 3 fragments
        assert "in pieces" in spoken(await peer.complete(1), 1)


async def test_websocket_pings_are_answered_and_the_call_goes_on(serve: Any) -> None:
    async with serve(EchoAgent(), call_details=False) as srv, retell(srv.ws_url, "ping") as peer:
        await peer.complete(0)
        latency = await asyncio.wait_for(await peer.ws.ping(b"are you there"), TIMEOUT)
        assert latency >= 0
        await peer.request(1, "still here")
        assert "still here" in spoken(await peer.complete(1), 1)


async def test_a_clean_close_is_echoed_and_ends_the_call(serve: Any) -> None:
    async with serve(EchoAgent(), call_details=False) as srv:
        async with connect(f"{srv.ws_url}/bye", compression=None) as ws:
            peer = RetellPeer(ws)
            await peer.complete(0)
            await ws.close(1000, "call over")
            assert ws.protocol.close_rcvd is not None
            assert ws.protocol.close_rcvd.code == 1000
        node = srv.app.node
        await asyncio.wait_for(node.wait_idle(), TIMEOUT)
        assert "bye" not in node.sessions


async def test_an_unmasked_frame_fails_the_socket_with_1002(serve: Any) -> None:
    async with serve(EchoAgent(), call_details=False) as srv:
        reader, writer, head = await _raw_socket(srv.port, "/llm-websocket/unmasked")
        assert head.startswith(b"HTTP/1.1 101")
        writer.write(Frame(Opcode.TEXT, b'{"interaction_type":"ping_pong"}').serialize(mask=False))
        close = await _read_until_close(reader)
        assert close is not None
        assert parse_close(bytes(close.data))[0] == 1002
        assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""  # then the TCP close
        writer.close()


async def test_a_frame_over_the_socket_limit_is_refused_with_1009_from_its_header(
    serve: Any,
) -> None:
    async with serve(EchoAgent(), call_details=False, max_frame_bytes=1024) as srv:
        reader, writer, _ = await _raw_socket(srv.port, "/llm-websocket/huge")
        header = Frame(Opcode.TEXT, b"x" * 100_000).serialize(mask=True)[:14]
        writer.write(header)  # the payload never follows: the header alone is enough
        close = await _read_until_close(reader)
        assert close is not None
        assert parse_close(bytes(close.data))[0] == 1009
        writer.close()


async def test_malformed_handshakes_get_http_errors_and_take_no_slot(serve: Any) -> None:
    async with serve(EchoAgent(), call_details=False) as srv:
        _, writer, head = await _raw_socket(srv.port, "/llm-websocket/c1", Sec_WebSocket_Key="")
        assert head.startswith(b"HTTP/1.1 400")
        writer.close()
        _, writer, head = await _raw_socket(
            srv.port, "/llm-websocket/c1", Sec_WebSocket_Key="c2hvcnQ="
        )
        assert head.startswith(b"HTTP/1.1 400")
        writer.close()
        _, writer, head = await _raw_socket(
            srv.port, "/llm-websocket/c1", Sec_WebSocket_Version="8"
        )
        assert head.startswith(b"HTTP/1.1 426")
        assert b"sec-websocket-version: 13" in head.lower()
        writer.close()
        _, writer, head = await _raw_socket(srv.port, "/elsewhere/c1")
        assert head.startswith(b"HTTP/1.1 404")
        writer.close()
        assert srv.app.node.active == 0
        async with retell(srv.ws_url, "c1") as peer:  # the server is unharmed
            await peer.complete(0)


async def test_a_silent_socket_is_pinged_then_closed(serve: Any) -> None:
    async with serve(EchoAgent(), call_details=False, socket_idle_s=0.2) as srv:
        reader, writer, head = await _raw_socket(srv.port, "/llm-websocket/silent")
        assert head.startswith(b"HTTP/1.1 101")
        # Never answers anything: the server pings, then gives up with 1011.
        opcodes = []
        async for frame in _server_frames(reader):
            opcodes.append(frame.opcode)
            if frame.opcode is Opcode.CLOSE:
                assert parse_close(bytes(frame.data))[0] == 1011
                break
        assert Opcode.CLOSE in opcodes, "closed without a close frame"
        assert Opcode.PING in opcodes
        writer.close()
        await asyncio.wait_for(srv.app.node.wait_idle(), TIMEOUT)

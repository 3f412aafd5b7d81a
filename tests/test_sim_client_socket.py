"""The simulator's lean client socket against real servers: a ``websockets`` server, and a
raw TCP server that completes the handshake and then writes exact bytes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import InvalidStatus
from websockets.http11 import Request, Response
from websockets.utils import accept_key

from switchboard.sim.client_socket import (
    ClientSocket,
    MaskPool,
    Message,
    open_socket,
    text_frame,
)

pytestmark = pytest.mark.integration

TIMEOUT = 10.0

Handler = Callable[[ServerConnection], Awaitable[None]]
RawScript = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def ws_server(handler: Handler, **kwargs: object) -> AsyncIterator[str]:
    async with serve(handler, "127.0.0.1", 0, compression=None, **kwargs) as server:  # type: ignore[arg-type]
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}/llm-websocket/abc"


@contextlib.asynccontextmanager
async def raw_server(script: RawScript, handshake: bool = True) -> AsyncIterator[str]:
    """A server that answers the opening handshake (if ``handshake``), then runs ``script``."""
    tasks: set[asyncio.Task[None]] = set()

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if handshake:
                head = await reader.readuntil(b"\r\n\r\n")
                key = next(
                    line.split(b":", 1)[1].strip().decode()
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"sec-websocket-key:")
                )
                writer.write(
                    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                    b"Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n"
                    % accept_key(key).encode()
                )
            await script(reader, writer)
        finally:
            writer.transport.abort()

    def start(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(on_client(reader, writer))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    server = await asyncio.start_server(start, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"ws://127.0.0.1:{port}/llm-websocket/abc"
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def server_frame(opcode: int, payload: bytes, fin: bool = True, mask: bytes | None = None) -> bytes:
    """A frame as a server (unmasked) or a misbehaving one (``mask``) would write it."""
    head = (0x80 if fin else 0) | opcode
    n = len(payload)
    mask_bit = 0x80 if mask else 0
    if n < 126:
        out = bytes((head, mask_bit | n))
    elif n < 65536:
        out = struct.pack("!BBH", head, mask_bit | 126, n)
    else:
        out = struct.pack("!BBQ", head, mask_bit | 127, n)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        return out + mask + payload
    return out + payload


GO = b"go"


async def wait_for_go(reader: asyncio.StreamReader) -> None:
    """Wait for the client's ``GO`` frame, so what the script writes next arrives after
    the handshake (in reads of its own, on the socket's fast path)."""
    frame = await reader.readexactly(2 + 4 + len(GO))
    assert frame[1] == 0x80 | len(GO)


async def started(sock: ClientSocket, inbox: Inbox) -> None:
    sock.deliver_to(inbox)
    assert sock.write_text(GO)


async def connect(url: str, **kwargs: float) -> ClientSocket:
    return await open_socket(
        url,
        open_timeout=kwargs.get("open_timeout", TIMEOUT),
        close_timeout=kwargs.get("close_timeout", TIMEOUT),
        max_size=1 << 20,
    )


class Inbox:
    """Messages a socket delivered, and a way to wait for the n-th."""

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self._changed = asyncio.Event()

    def __call__(self, message: Message) -> None:
        self.messages.append(message)
        self._changed.set()

    async def wait_for(self, count: int) -> list[Message]:
        async with asyncio.timeout(TIMEOUT):
            while len(self.messages) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.messages


# ---------------------------------------------------------------------- frames and masks


def test_text_frame_is_masked_with_the_given_key_in_all_three_length_forms() -> None:
    key = b"\x01\x02\x03\x04"
    for size in (0, 125, 126, 65535, 65536):
        payload = os.urandom(size)
        frame = text_frame(payload, key)
        assert frame[0] == 0x81  # FIN, text
        assert frame[1] & 0x80  # masked
        header = {True: 2, False: 4}[size < 126] if size < 65536 else 10
        assert frame[header : header + 4] == key
        body = frame[header + 4 :]
        assert bytes(b ^ key[i % 4] for i, b in enumerate(body)) == payload


def test_mask_pool_draws_fresh_keys_across_blocks() -> None:
    pool = MaskPool(keys_per_block=4)
    keys = [pool.take() for _ in range(64)]
    assert all(len(key) == 4 for key in keys)
    assert len(set(keys)) > 60  # 32-bit random keys: a repeat is a one-in-millions event


# ---------------------------------------------------------------------- with websockets


async def test_messages_round_trip_through_a_websockets_server() -> None:
    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    payloads = [b'{"a":1}', b"x" * 300, "é".encode() * 40_000]  # 7 B, 300 B, 80 kB
    async with ws_server(echo) as url:
        sock = await connect(url)
        inbox = Inbox()
        sock.deliver_to(inbox)
        for payload in payloads:
            assert await sock.send_text(payload)
        got = await inbox.wait_for(len(payloads))
        await sock.close()
    # The server unmasked every frame (websockets rejects unmasked client frames).
    assert got == [p.decode() for p in payloads]
    assert sock.close_rcvd is not None
    assert sock.close_rcvd.code == 1000


async def test_messages_sent_before_delivery_starts_are_kept_in_order() -> None:
    sent = asyncio.Event()

    async def greet(ws: ServerConnection) -> None:
        for n in range(3):
            await ws.send(f"hello {n}")
        sent.set()
        await ws.wait_closed()

    async with ws_server(greet) as url:
        sock = await connect(url)
        await asyncio.wait_for(sent.wait(), TIMEOUT)
        inbox = Inbox()
        sock.deliver_to(inbox)
        assert await inbox.wait_for(3) == ["hello 0", "hello 1", "hello 2"]
        await sock.close()


async def test_server_pings_are_answered() -> None:
    latency: list[float] = []

    async def ping(ws: ServerConnection) -> None:
        pong = await ws.ping()
        latency.append(await asyncio.wait_for(pong, TIMEOUT))
        await ws.send("ponged")
        await ws.wait_closed()

    async with ws_server(ping) as url:
        sock = await connect(url)
        inbox = Inbox()
        sock.deliver_to(inbox)
        assert await inbox.wait_for(1) == ["ponged"]
        await sock.close()
    assert len(latency) == 1


async def test_a_fragmented_message_is_reassembled() -> None:
    async def fragments(ws: ServerConnection) -> None:
        await ws.send(["part one, ", "part two"])
        await ws.send("whole")
        await ws.wait_closed()

    async with ws_server(fragments) as url:
        sock = await connect(url)
        inbox = Inbox()
        sock.deliver_to(inbox)
        assert await inbox.wait_for(2) == ["part one, part two", "whole"]
        await sock.close()


async def test_the_server_closing_ends_the_socket_with_its_code() -> None:
    async def close(ws: ServerConnection) -> None:
        await ws.close(1011, "boom")

    async with ws_server(close) as url:
        sock = await connect(url)
        sock.deliver_to(Inbox())
        await asyncio.wait_for(sock.ended(), TIMEOUT)
    assert sock.close_rcvd is not None
    assert (sock.close_rcvd.code, sock.close_rcvd.reason) == (1011, "boom")
    assert not sock.open
    assert not sock.write_text(b"too late")


async def test_closing_runs_the_handshake_with_the_code_given() -> None:
    codes: list[int | None] = []

    async def wait(ws: ServerConnection) -> None:
        await ws.wait_closed()
        codes.append(ws.close_code)

    async with ws_server(wait) as url:
        sock = await connect(url)
        await asyncio.wait_for(sock.close(1001, "keepalive timeout"), TIMEOUT)
        await asyncio.wait_for(sock.close(), TIMEOUT)  # idempotent
    assert codes == [1001]
    assert sock.close_rcvd is not None
    assert sock.close_rcvd.code == 1001


async def test_a_dropped_connection_has_no_close_frame() -> None:
    async def drop(ws: ServerConnection) -> None:
        ws.transport.abort()

    async with ws_server(drop) as url:
        sock = await connect(url)
        sock.deliver_to(Inbox())
        await asyncio.wait_for(sock.ended(), TIMEOUT)
    assert sock.close_rcvd is None  # what Retell reports as 1006


async def test_a_refused_handshake_raises_invalid_status() -> None:
    def refuse(connection: ServerConnection, request: Request) -> Response:
        return connection.respond(403, "no\n")

    async def never(ws: ServerConnection) -> None:
        raise AssertionError("the handshake was refused")

    async with ws_server(never, process_request=refuse) as url:
        with pytest.raises(InvalidStatus) as err:
            await connect(url)
    assert err.value.response.status_code == 403


async def test_the_handshake_request_is_plain() -> None:
    seen: list[Headers] = []

    async def record(ws: ServerConnection) -> None:
        assert ws.request is not None
        seen.append(ws.request.headers)

    async with ws_server(record) as url:
        sock = await connect(url)
        await asyncio.wait_for(sock.ended(), TIMEOUT)
    (headers,) = seen
    assert "User-Agent" not in headers
    assert "Sec-WebSocket-Extensions" not in headers  # no compression


# ---------------------------------------------------------------------- exact bytes


async def test_frames_split_across_reads_and_packed_into_one_are_all_delivered() -> None:
    frames = b"".join(server_frame(0x1, f"message {n}".encode() * n) for n in range(1, 40))
    frames += server_frame(0x1, b"y" * 70_000)

    async def trickle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await wait_for_go(reader)
        for start in range(0, len(frames), 7):  # 7-byte writes
            writer.write(frames[start : start + 7])
            await writer.drain()
        writer.write(frames)  # and all at once
        await reader.read()

    async with raw_server(trickle) as url:
        sock = await connect(url)
        inbox = Inbox()
        await started(sock, inbox)
        got = await inbox.wait_for(80)
        sock.abort()
    expected = [f"message {n}" * n for n in range(1, 40)] + ["y" * 70_000]
    assert got == expected * 2


async def test_a_masked_server_frame_fails_the_connection() -> None:
    received: list[bytes] = []

    async def masked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await wait_for_go(reader)
        writer.write(server_frame(0x1, b"fine"))
        writer.write(server_frame(0x1, b"masked", mask=b"abcd"))
        received.append(await reader.read(2 + 4 + 2))  # the client's close frame

    async with raw_server(masked) as url:
        sock = await connect(url, close_timeout=0.5)
        inbox = Inbox()
        await started(sock, inbox)
        await asyncio.wait_for(sock.wait_closed(), TIMEOUT)
    assert inbox.messages == ["fine"]
    assert received
    assert received[0][0] == 0x88
    code = bytes(b ^ received[0][2 + i % 4] for i, b in enumerate(received[0][6:8]))
    assert struct.unpack("!H", code) == (1002,)  # protocol error


async def test_invalid_utf8_closes_with_1007() -> None:
    received: list[bytes] = []

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await wait_for_go(reader)
        writer.write(server_frame(0x1, b"\xff\xfe"))
        writer.write(server_frame(0x1, b"after"))
        received.append(await reader.read(8))

    async with raw_server(garbage) as url:
        sock = await connect(url, close_timeout=0.5)
        inbox = Inbox()
        await started(sock, inbox)
        await asyncio.wait_for(sock.wait_closed(), TIMEOUT)
    assert inbox.messages == []  # nothing after the bad frame either
    code = bytes(b ^ received[0][2 + i % 4] for i, b in enumerate(received[0][6:8]))
    assert struct.unpack("!H", code) == (1007,)


async def test_binary_messages_and_an_oversized_frame() -> None:
    async def frames(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await wait_for_go(reader)
        writer.write(server_frame(0x2, b"\x00\x01"))
        writer.write(server_frame(0x1, b"z" * ((1 << 20) + 1)))  # over max_size
        await reader.read()

    async with raw_server(frames) as url:
        sock = await connect(url, close_timeout=0.5)
        inbox = Inbox()
        await started(sock, inbox)
        await asyncio.wait_for(sock.wait_closed(), TIMEOUT)
    assert inbox.messages == [b"\x00\x01"]


async def test_an_unanswered_handshake_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async with raw_server(silent, handshake=False) as url:
        with pytest.raises(TimeoutError):
            await connect(url, open_timeout=0.2)


async def test_a_close_the_server_never_answers_is_aborted_after_close_timeout() -> None:
    async def deaf(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # reads the close frame, never answers it

    async with raw_server(deaf) as url:
        sock = await connect(url, close_timeout=0.2)
        await asyncio.wait_for(sock.close(), TIMEOUT)
    assert sock.close_rcvd is None


async def test_a_full_write_buffer_pauses_senders_until_the_server_reads() -> None:
    reading = asyncio.Event()

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reading.wait()
        while await reader.read(1 << 16):
            pass

    async with raw_server(slow) as url:
        sock = await connect(url)
        payload = b"p" * 65536
        for _ in range(1000):  # far beyond any socket buffer
            assert sock.write_text(payload)
            if sock.paused:
                break
        assert sock.paused
        reading.set()
        assert await asyncio.wait_for(sock.drain(), TIMEOUT)
        assert not sock.paused
        sock.abort()

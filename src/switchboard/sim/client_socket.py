"""The simulator's side of one WebSocket: websockets' sans-I/O client on a bare transport.

At thousands of calls the load generator must cost less than the server it measures.
websockets' asyncio ``Connection`` is general (concurrent senders, fragmented sends,
its own keepalive, a receive queue with flow control), and each ``send`` pays for that:
an async context manager, a drain, and a ``getrandom`` syscall for the frame's mask.
This module keeps what must stay exact and drops the rest:

- websockets' ``ClientProtocol`` still does the opening handshake, answers pings with
  pongs, runs the closing handshake and parses and validates every frame but one kind:
  an unfragmented, unmasked text or binary frame within ``max_size`` (what a server
  sends almost always) is cut out of the stream here, after the same checks websockets
  makes; anything else, from the first byte of a frame that is not of that kind, is fed
  to the protocol, which validates it and fails the connection as websockets does;
- outgoing text frames are built here: masked as RFC 6455 5.3 requires, with a key from
  ``MaskPool`` (the OS CSPRNG, read a few KB at a time), and written straight to the
  transport; a send waits only while the transport has paused writing;
- messages are handed to a callback as they are read, so the caller's timestamps are
  taken in the same step as the read and there is no queue or task wake-up per frame.

What the caller sees matches the asyncio client it replaces: ``close_rcvd`` is ``None``
after a drop without a close frame (1006), a send on a socket that is closing waits for
it to close and reports failure, ``close`` waits for the closing handshake and aborts
the TCP connection ``close_timeout`` after it began, and a text frame that is not UTF-8
closes the socket with 1007. Not supported, as the simulator needs none of them:
compression, subprotocols, proxies, redirects, sending fragmented or binary messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
from collections.abc import Callable
from typing import Final, cast

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidMessage
from websockets.frames import Close, CloseCode, Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.typing import BytesLike
from websockets.uri import parse_uri

try:
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover - the C extension ships in websockets' wheels
    from websockets.utils import apply_mask

from switchboard.log import get_logger

log = get_logger("switchboard.sim")

#: What a message handler is given: a text message decoded, a binary one as bytes.
Message = str | bytes
Handler = Callable[[Message], None]

#: Transport write buffer limits, as websockets' asyncio client sets them.
WRITE_LIMIT_HIGH: Final = 2**15
_OPEN = State.OPEN
_TEXT = Opcode.TEXT
_BINARY = Opcode.BINARY
_CONT = Opcode.CONT
_pack_16 = struct.Struct("!BBH").pack
_pack_64 = struct.Struct("!BBQ").pack


class MaskPool:
    """Masking keys for client frames, drawn from ``os.urandom`` a block at a time.

    RFC 6455 (5.3) wants each key unpredictable to whoever sees the traffic, so keys come
    from the OS CSPRNG like ``secrets.token_bytes``; reading 1,024 keys per syscall
    instead of one makes that cost negligible. A forked child starts a fresh block, so
    two processes never share keys.
    """

    __slots__ = ("_block", "_pos", "_size")

    def __init__(self, keys_per_block: int = 1024) -> None:
        self._size = 4 * keys_per_block
        self._block = b""
        self._pos = 0

    def reset(self) -> None:
        self._block = b""
        self._pos = 0

    def take(self) -> bytes:
        pos = self._pos
        if pos >= len(self._block):
            self._block = os.urandom(self._size)
            pos = 0
        self._pos = pos + 4
        return self._block[pos : pos + 4]


masks = MaskPool()
os.register_at_fork(after_in_child=masks.reset)


def text_frame(payload: bytes, mask: bytes) -> bytes:
    """A single masked text frame (FIN set, no extensions) carrying ``payload``."""
    n = len(payload)
    if n < 126:
        head = bytes((0x81, 0x80 | n))
    elif n < 65536:
        head = _pack_16(0x81, 0xFE, n)
    else:
        head = _pack_64(0x81, 0xFF, n)
    return head + mask + apply_mask(payload, mask)


class ClientSocket(asyncio.Protocol):
    """One client WebSocket. Made by ``open_socket``; messages go to ``deliver_to``'s
    handler, in order, from the moment the handshake completed."""

    def __init__(self, protocol: ClientProtocol, close_timeout: float) -> None:
        loop = asyncio.get_running_loop()
        self.protocol = protocol
        self._loop = loop
        self._close_timeout = close_timeout
        self._transport: asyncio.Transport | None = None
        self._opened: asyncio.Future[None] = loop.create_future()
        self._lost: asyncio.Future[None] = loop.create_future()
        self._ended: asyncio.Future[None] = loop.create_future()
        self._handler: Handler | None = None
        self._backlog: list[Message] | None = []  # None: messages are dropped
        self._fragments: list[BytesLike] = []
        self._max_size = protocol.max_message_size
        self._partial = b""  # the start of a frame the fast path is waiting to complete
        self._fragments_text = False
        self._paused = False
        self._drained: asyncio.Future[None] | None = None
        self._close_timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ what callers use

    @property
    def open(self) -> bool:
        return self.protocol.state is _OPEN

    @property
    def close_rcvd(self) -> Close | None:
        """The server's close frame (``websockets.frames.Close``), ``None`` if none came."""
        return self.protocol.close_rcvd

    @property
    def paused(self) -> bool:
        """The transport's buffer is full: a sender should ``drain`` before going on."""
        return self._paused

    def deliver_to(self, handler: Handler) -> None:
        """Hand every message to ``handler`` from now on, starting with any read since the
        handshake. A handler that raises fails the socket (1011) instead of the reader."""
        backlog = self._backlog
        if backlog is None:
            return
        self._handler = handler
        self._backlog = []
        for message in backlog:
            self._deliver(message)

    def stop_delivery(self) -> None:
        """Drop messages from now on; ``ended`` returns."""
        self._handler = None
        self._backlog = None
        if not self._ended.done():
            self._ended.set_result(None)

    async def ended(self) -> None:
        """Wait until the TCP connection is closed or ``stop_delivery`` was called."""
        await asyncio.shield(self._ended)

    async def wait_closed(self) -> None:
        await asyncio.shield(self._lost)

    def write_text(self, payload: bytes) -> bool:
        """Send ``payload`` (UTF-8) as one text frame; ``False`` if the socket is not open.

        Never waits: the caller checks ``paused`` and awaits ``drain`` to respect the
        peer's pace, as a sender on websockets' asyncio connection would wait in ``send``.
        """
        transport = self._transport
        if self.protocol.state is not _OPEN or transport is None:
            return False
        transport.write(text_frame(payload, masks.take()))
        return True

    async def send_text(self, payload: bytes) -> bool:
        """``write_text`` then ``drain``, or wait for a closing socket to close: what
        websockets' ``send`` does before it raises ``ConnectionClosed`` (``False`` here)."""
        if not self.write_text(payload):
            await self.wait_closed()
            return False
        if self._paused:
            return await self.drain()
        return True

    async def drain(self) -> bool:
        """Wait until the transport takes writes again; ``False`` if the socket was lost."""
        while self._paused:
            if self._drained is None:
                self._drained = self._loop.create_future()
            await asyncio.shield(self._drained)
        return not self._lost.done()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """The closing handshake: send a close frame, wait until the server closes the TCP
        connection, abort it ``close_timeout`` after closing began. Idempotent."""
        self.start_close(code, reason)
        await self.wait_closed()

    def start_close(self, code: int = 1000, reason: str = "") -> None:
        """``close`` without waiting: the socket ends (``ended``) when the TCP connection
        does, at most ``close_timeout`` later."""
        if self.protocol.state is _OPEN:
            self.protocol.send_close(code, reason)
            self._flush()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        self._transport = transport
        transport.set_write_buffer_limits(WRITE_LIMIT_HIGH)
        # websockets' client adds a User-Agent header; Retell's sockets carry none.
        self.protocol.send_request(self.protocol.connect())
        self._flush()

    def data_received(self, data: bytes) -> None:
        protocol = self.protocol
        if protocol.state is _OPEN and not self._fragments and not protocol.reader.buffer:
            self._read_simple_frames(self._partial + data if self._partial else data)
        else:
            self._feed(data)

    def _read_simple_frames(self, data: bytes) -> None:
        """Deliver the simple frames at the start of ``data`` (see the module docstring);
        keep an incomplete one for the next read; feed the rest to the protocol."""
        end = len(data)
        pos = 0
        max_size = self._max_size
        self._partial = b""
        while pos < end:
            if end - pos < 2:
                self._partial = data[pos:]
                return
            head = data[pos]
            length = data[pos + 1]
            if (head != 0x81 and head != 0x82) or length & 0x80:
                # Not FIN + text/binary without RSV bits, or masked: the protocol's.
                self._feed(data[pos:] if pos else data)
                return
            start = pos + 2
            if length == 126:
                if end - pos < 4:
                    self._partial = data[pos:]
                    return
                length = (data[pos + 2] << 8) | data[pos + 3]
                start = pos + 4
            elif length == 127:
                if end - pos < 10:
                    self._partial = data[pos:]
                    return
                length = int.from_bytes(data[pos + 2 : pos + 10])
                start = pos + 10
            if length > 0x7FFF_FFFF_FFFF_FFFF or (max_size is not None and length > max_size):
                self._feed(data[pos:] if pos else data)
                return
            stop = start + length
            if stop > end:
                self._partial = data[pos:] if pos else data
                return
            self._message(data[start:stop], head == 0x81)
            pos = stop
            if self.protocol.state is not _OPEN:  # the handler closed the socket
                if pos < end:
                    self._feed(data[pos:])
                return

    def _feed(self, data: bytes) -> None:
        """Let websockets' protocol read ``data``: the handshake, control frames,
        fragments, anything unusual, and everything once the socket is closing."""
        protocol = self.protocol
        protocol.receive_data(data)
        events = protocol.events_received()
        self._flush()
        for event in events:
            if type(event) is Frame:
                self._on_frame(event)
            else:
                self._on_response(event)
        if protocol.handshake_exc is not None and not self._opened.done():
            self._opened.set_exception(protocol.handshake_exc)  # refused or malformed

    def eof_received(self) -> None:
        self._hand_over_partial()
        self.protocol.receive_eof()
        self._flush()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None  # nothing more can be written
        self._hand_over_partial()
        self.protocol.receive_eof()  # the state is CLOSED; close_rcvd stays as it was
        if self._close_timer is not None:
            self._close_timer.cancel()
        if not self._opened.done():
            handshake_exc = self.protocol.handshake_exc
            self._opened.set_exception(
                handshake_exc or InvalidMessage("connection closed during the opening handshake")
            )
            self._opened.exception()  # retrieved: open_socket may have given up already
        self._lost.set_result(None)
        if not self._ended.done():
            self._ended.set_result(None)
        self._paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        drained, self._drained = self._drained, None
        if drained is not None and not drained.done():
            drained.set_result(None)

    # ------------------------------------------------------------------ internals

    def _hand_over_partial(self) -> None:
        """At EOF an incomplete frame is the protocol's to judge (1006, as websockets)."""
        if self._partial and not self.protocol.reader.eof:
            partial, self._partial = self._partial, b""
            self._feed(partial)

    def _flush(self) -> None:
        """Write what the protocol wants written (pongs, close frames, EOF) and, once the
        TCP connection is expected to close, arm the timer that aborts it if it does not."""
        protocol = self.protocol
        transport = self._transport
        writes = protocol.data_to_send()
        if writes and transport is not None:
            for data in writes:
                if data:
                    transport.write(data)
                elif transport.can_write_eof():
                    with contextlib.suppress(OSError):
                        transport.write_eof()
                else:  # pragma: no cover - TLS transports cannot half-close
                    transport.close()
        if self._close_timer is None and protocol.close_expected() and transport is not None:
            self._close_timer = self._loop.call_later(self._close_timeout, transport.abort)

    def _on_response(self, response: object) -> None:
        assert isinstance(response, Response)
        if self.protocol.handshake_exc is None and not self._opened.done():
            self._opened.set_result(None)

    def _on_frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is _TEXT or opcode is _BINARY:
            if frame.fin:
                self._message(frame.data, opcode is _TEXT)
            else:
                self._fragments = [frame.data]
                self._fragments_text = opcode is _TEXT
        elif opcode is _CONT:
            self._fragments.append(frame.data)
            if frame.fin:
                data = b"".join(self._fragments)
                self._fragments = []
                self._message(data, self._fragments_text)
        # Ping (answered), pong and close frames are the protocol's business.

    def _message(self, data: BytesLike, text: bool) -> None:
        if self._backlog is None:
            return
        if not text:
            self._deliver(bytes(data))
            return
        try:
            message = str(data, "utf-8")
        except UnicodeDecodeError as exc:
            self._fail(CloseCode.INVALID_DATA, f"{exc.reason} at position {exc.start}")
            return
        self._deliver(message)

    def _deliver(self, message: Message) -> None:
        handler = self._handler
        if handler is None:
            if self._backlog is not None:
                self._backlog.append(message)
            return
        try:
            handler(message)
        except Exception:
            log.exception("message handler failed")
            self._fail(CloseCode.INTERNAL_ERROR, "")

    def _fail(self, code: int, reason: str) -> None:
        """Close with ``code`` and read nothing more; ``ended`` waits for the TCP close."""
        self._handler = None
        self._backlog = None
        if self.protocol.state is _OPEN:
            self.protocol.fail(code, reason)
        self._flush()


async def open_socket(
    url: str,
    *,
    open_timeout: float,
    close_timeout: float,
    max_size: int | None,
) -> ClientSocket:
    """Connect and complete the opening handshake within ``open_timeout`` seconds.

    Raises what websockets' ``connect`` raises for the same failures: ``OSError`` when
    nothing accepts the connection, ``InvalidHandshake`` subclasses (``InvalidStatus``,
    ``InvalidMessage``...) for a refused or malformed handshake, ``TimeoutError``.
    """
    uri = parse_uri(url)
    loop = asyncio.get_running_loop()
    sock: ClientSocket | None = None

    def factory() -> ClientSocket:
        nonlocal sock
        sock = ClientSocket(ClientProtocol(uri, max_size=max_size), close_timeout)
        return sock

    try:
        async with asyncio.timeout(open_timeout):
            if uri.secure:
                await loop.create_connection(
                    factory, uri.host, uri.port, ssl=True, server_hostname=uri.host
                )
            else:
                await loop.create_connection(factory, uri.host, uri.port)
            assert sock is not None
            await asyncio.shield(sock._opened)
    except TimeoutError as exc:
        if sock is not None:
            sock.abort()
        raise TimeoutError("timed out during opening handshake") from exc
    except BaseException:
        if sock is not None:
            sock.abort()
        raise
    return sock


__all__ = [
    "ClientSocket",
    "Handler",
    "MaskPool",
    "Message",
    "masks",
    "open_socket",
    "text_frame",
]

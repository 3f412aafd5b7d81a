"""RFC 6455 framing for the server side of a call socket: parse what a client sends,
frame what a server sends.

Why by hand: a call socket carries thousands of small frames a second per node (Retell's
pings, partial transcripts, replies), and websockets' sans-I/O parser, a generator over a
stream reader, cost about 7 µs per inbound frame, a tenth of the node's CPU at 5,000 calls.
This parser is a loop over a bytes buffer: a few hundred nanoseconds a frame, with the
unmasking still done by websockets' C ``apply_mask``. It covers the whole of what a
server must check (section 5): reserved bits, masking, opcodes, control frame rules,
fragmentation and its size limit, close frame codes and reasons. No extension is ever
negotiated, so any reserved bit is an error.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

try:  # websockets' C unmasking; its pure-Python fallback where the wheel has none
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover
    from websockets.utils import apply_mask

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_DATA = (CONT, TEXT, BINARY)
_CONTROL = (CLOSE, PING, PONG)

#: Close codes (section 7.4).
NORMAL, PROTOCOL_ERROR, NO_STATUS, INVALID_DATA, TOO_BIG, INTERNAL_ERROR = (
    1000,
    1002,
    1005,
    1007,
    1009,
    1011,
)
#: Codes a peer may put in a close frame: 1000-1003, 1007-1014, 3000-4999.
_SENDABLE = frozenset((1000, 1001, 1002, 1003, *range(1007, 1015), *range(3000, 5000)))

_SHORT = struct.Struct("!H")
_LONG = struct.Struct("!Q")


class FrameError(Exception):
    """The peer broke the protocol: fail the connection with ``code`` (section 7.1.7)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


#: ``on_message(is_text, payload)``, ``on_control(opcode, payload)``
MessageHandler = Callable[[bool, bytes], None]
ControlHandler = Callable[[int, bytes], None]
#: ``skip(head, size)``: whether a text message of ``size`` bytes that starts with ``head``
#: is dropped unread (see ``FrameReader``)
SkipPredicate = Callable[[bytes, int], bool]


class FrameReader:
    """Reassembles messages from a client's byte stream.

    ``feed`` calls ``on_message`` for each complete text or binary message (fragments
    joined) and ``on_control`` for each ping, pong and close, in stream order, and
    raises ``FrameError`` at the first violation; the connection is then to be failed,
    and nothing more is fed. ``max_size`` bounds a message, fragments included, and is
    checked from a frame's header, before its payload is buffered.

    With ``skip``, every text message is first shown to it by its first ``head_size``
    bytes and its size; one it refuses is dropped, and a single frame's payload is then
    never unmasked past its head. A call's partial transcripts are tens of KB each, several
    a turn, and the session reads almost none of them (``FrameDecoder.skips_head``).
    """

    __slots__ = (
        "_buffer",
        "_fragment_size",
        "_fragment_text",
        "_fragments",
        "head_size",
        "max_size",
        "skip",
    )

    def __init__(
        self, max_size: int, skip: SkipPredicate | None = None, head_size: int = 0
    ) -> None:
        self.max_size = max_size
        self.skip = skip
        self.head_size = head_size
        #: the bytes of an incomplete frame; grown in place, so a frame that arrives in
        #: many small reads costs linear time, not quadratic
        self._buffer = bytearray()
        self._fragments: list[bytes] | None = None
        self._fragment_size = 0
        self._fragment_text = False

    # One function on purpose: it runs for every read of every call socket, and the
    # frame header's cases are clearest (and cheapest) side by side.
    def feed(  # noqa: C901
        self, data: bytes, on_message: MessageHandler, on_control: ControlHandler
    ) -> None:
        buf: bytes | bytearray
        if self._buffer:
            self._buffer += data
            buf = self._buffer
        else:
            buf = data  # the common case: whole frames, parsed without a copy
        end = len(buf)
        pos = 0
        while end - pos >= 2:
            head, second = buf[pos], buf[pos + 1]
            if head & 0x70:
                raise FrameError(PROTOCOL_ERROR, "reserved bits set")
            if not second & 0x80:
                raise FrameError(PROTOCOL_ERROR, "unmasked client frame")
            opcode = head & 0x0F
            fin = head & 0x80
            length = second & 0x7F
            start = pos + 2
            if length == 126:
                if end - pos < 4:
                    break
                length = _SHORT.unpack_from(buf, start)[0]
                start += 2
            elif length == 127:
                if end - pos < 10:
                    break
                length = _LONG.unpack_from(buf, start)[0]
                start += 8
            if opcode in _CONTROL:
                if length > 125:
                    raise FrameError(PROTOCOL_ERROR, "control frame too long")
                if not fin:
                    raise FrameError(PROTOCOL_ERROR, "fragmented control frame")
            elif opcode not in _DATA:
                raise FrameError(PROTOCOL_ERROR, f"unknown opcode {opcode}")
            elif length + self._fragment_size > self.max_size:
                raise FrameError(TOO_BIG, f"message over {self.max_size} bytes")
            payload_at = start + 4
            frame_end = payload_at + length
            if frame_end > end:
                break
            mask = buf[start:payload_at]
            if opcode == TEXT and fin and self.skip is not None and self._fragments is None:
                head_end = payload_at + min(length, self.head_size)
                if self.skip(apply_mask(buf[payload_at:head_end], mask), length):
                    pos = frame_end
                    continue
            payload = apply_mask(buf[payload_at:frame_end], mask)
            pos = frame_end
            if opcode in (TEXT, BINARY):
                if self._fragments is not None:
                    raise FrameError(PROTOCOL_ERROR, "expected a continuation frame")
                if fin:
                    on_message(opcode == TEXT, payload)
                else:
                    self._fragments = [payload]
                    self._fragment_size = length
                    self._fragment_text = opcode == TEXT
            elif opcode == CONT:
                fragments = self._fragments
                if fragments is None:
                    raise FrameError(PROTOCOL_ERROR, "unexpected continuation frame")
                fragments.append(payload)
                self._fragment_size += length
                if fin:
                    self._fragments = None
                    self._fragment_size = 0
                    message = b"".join(fragments)
                    skip = self.skip
                    if not (
                        self._fragment_text
                        and skip is not None
                        and skip(message[: self.head_size], len(message))
                    ):
                        on_message(self._fragment_text, message)
            else:
                if opcode == CLOSE and self._fragments is not None:
                    raise FrameError(PROTOCOL_ERROR, "close inside a fragmented message")
                on_control(opcode, payload)
        if pos >= end:
            self._buffer.clear()
        elif buf is data:
            self._buffer = bytearray(data[pos:])
        else:
            del self._buffer[:pos]


def parse_close(payload: bytes) -> tuple[int, str]:
    """``(code, reason)`` of a close frame's payload (section 5.5.1); no payload is 1005."""
    if not payload:
        return NO_STATUS, ""
    if len(payload) == 1:
        raise FrameError(PROTOCOL_ERROR, "close frame with a one-byte payload")
    code = _SHORT.unpack_from(payload)[0]
    if code not in _SENDABLE:
        raise FrameError(PROTOCOL_ERROR, f"invalid close code {code}")
    try:
        reason = payload[2:].decode()
    except UnicodeDecodeError:
        raise FrameError(INVALID_DATA, "close reason is not UTF-8") from None
    return code, reason


def server_frame(opcode: int, payload: bytes) -> bytes:
    """One final, unmasked frame, as a server sends it (section 5.2)."""
    size = len(payload)
    if size < 126:
        return bytes((0x80 | opcode, size)) + payload
    if size < 65536:
        return bytes((0x80 | opcode, 126)) + _SHORT.pack(size) + payload
    return bytes((0x80 | opcode, 127)) + _LONG.pack(size) + payload


def close_frame(code: int, reason: str = "") -> bytes:
    """A close frame with ``code`` (1005, "no status", is sent as an empty close)."""
    if code == NO_STATUS:
        return server_frame(CLOSE, b"")
    return server_frame(CLOSE, _SHORT.pack(code) + reason.encode()[:123])

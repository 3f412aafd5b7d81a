"""``server.websocket``: the server-side RFC 6455 framing, checked against websockets'
own frame serialiser (what a real client puts on the wire)."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from switchboard.server.websocket import (
    CLOSE,
    PING,
    PONG,
    FrameError,
    FrameReader,
    close_frame,
    parse_close,
    server_frame,
)


def client_frame(opcode: Opcode, data: bytes, fin: bool = True) -> bytes:
    """A masked frame exactly as websockets' client serialises it."""
    return Frame(opcode, data, fin=fin).serialize(mask=True)


def raw_frame(first_byte: int, payload: bytes) -> bytes:
    """A masked frame (zero mask) with any first byte, including ones websockets refuses
    to build; ``payload`` under 126 bytes."""
    return bytes((first_byte, 0x80 | len(payload))) + b"\x00" * 4 + payload


class Collector:
    def __init__(self) -> None:
        self.messages: list[tuple[bool, bytes]] = []
        self.controls: list[tuple[int, bytes]] = []

    def feed(self, reader: FrameReader, data: bytes) -> None:
        reader.feed(data, lambda t, p: self.messages.append((t, p)), self._control)

    def _control(self, opcode: int, payload: bytes) -> None:
        self.controls.append((opcode, payload))


def test_text_binary_and_control_frames_are_read_in_stream_order() -> None:
    reader, seen = FrameReader(1 << 20), Collector()
    stream = (
        client_frame(Opcode.TEXT, b'{"a":1}')
        + client_frame(Opcode.PING, b"hi")
        + client_frame(Opcode.BINARY, b"\x00\x01")
        + client_frame(Opcode.TEXT, "é".encode() * 40_000)  # a 64-bit length
        + client_frame(Opcode.PONG, b"")
    )
    seen.feed(reader, stream)
    assert seen.messages == [
        (True, b'{"a":1}'),
        (False, b"\x00\x01"),
        (True, "é".encode() * 40_000),
    ]
    assert seen.controls == [(PING, b"hi"), (PONG, b"")]


def test_frames_split_at_every_byte_boundary_reassemble() -> None:
    stream = client_frame(Opcode.TEXT, b"x" * 300) + client_frame(Opcode.TEXT, b"y" * 70_000)
    for cut in (1, 2, 3, 4, 7, 8, 150, 305, 306, 310, len(stream) - 1):
        reader, seen = FrameReader(1 << 20), Collector()
        seen.feed(reader, stream[:cut])
        seen.feed(reader, stream[cut:])
        assert seen.messages == [(True, b"x" * 300), (True, b"y" * 70_000)], cut


def test_a_large_frame_fed_a_few_bytes_at_a_time_is_read_once_complete() -> None:
    stream = client_frame(Opcode.TEXT, os.urandom(20_000).hex().encode())
    reader, seen = FrameReader(1 << 20), Collector()
    for i in range(0, len(stream), 7):
        seen.feed(reader, stream[i : i + 7])
    assert len(seen.messages) == 1
    assert len(seen.messages[0][1]) == 40_000


def test_fragments_join_into_one_message_with_controls_between_them() -> None:
    reader, seen = FrameReader(1 << 20), Collector()
    seen.feed(
        reader,
        client_frame(Opcode.TEXT, b"ab", fin=False)
        + client_frame(Opcode.PING, b"p")
        + client_frame(Opcode.CONT, b"cd", fin=False)
        + client_frame(Opcode.CONT, b"ef"),
    )
    assert seen.messages == [(True, b"abcdef")]
    assert seen.controls == [(PING, b"p")]


class Skipper:
    """Refuses text messages whose head starts with ``b"skip"``; records what it saw."""

    def __init__(self) -> None:
        self.seen: list[tuple[bytes, int]] = []

    def __call__(self, head: bytes, size: int) -> bool:
        self.seen.append((head, size))
        return head.startswith(b"skip")


def test_a_text_message_the_skip_predicate_refuses_is_dropped_by_its_head() -> None:
    skipper = Skipper()
    reader, seen = FrameReader(1 << 20, skipper, head_size=6), Collector()
    big = b"skip:" + os.urandom(30_000)
    stream = (
        client_frame(Opcode.TEXT, big)
        + client_frame(Opcode.PING, b"p")
        + client_frame(Opcode.TEXT, b"keep me")
        + client_frame(Opcode.BINARY, b"skip binary")  # only text is shown to it
        + client_frame(Opcode.TEXT, b"ski")  # shorter than the head: shown whole
        + client_frame(Opcode.TEXT, b"skip")
    )
    # Split mid-frame too: the head is judged once the whole frame is in.
    seen.feed(reader, stream[:1000])
    seen.feed(reader, stream[1000:])
    assert seen.messages == [(True, b"keep me"), (False, b"skip binary"), (True, b"ski")]
    assert seen.controls == [(PING, b"p")]
    assert skipper.seen == [
        (b"skip:" + big[5:6], len(big)),
        (b"keep m", 7),
        (b"ski", 3),
        (b"skip", 4),
    ]


def test_a_fragmented_text_message_is_judged_once_joined() -> None:
    skipper = Skipper()
    reader, seen = FrameReader(1 << 20, skipper, head_size=4), Collector()
    seen.feed(
        reader,
        client_frame(Opcode.TEXT, b"sk", fin=False)
        + client_frame(Opcode.CONT, b"ip it")
        + client_frame(Opcode.TEXT, b"ke", fin=False)
        + client_frame(Opcode.CONT, b"ep it"),
    )
    assert seen.messages == [(True, b"keep it")]
    assert skipper.seen == [(b"skip", 7), (b"keep", 7)]


def test_a_skip_predicate_changes_no_protocol_check() -> None:
    # A text frame inside a fragmented message is still an error, skippable or not.
    reader = FrameReader(1 << 20, Skipper(), head_size=4)
    with pytest.raises(FrameError) as err:
        Collector().feed(
            reader,
            client_frame(Opcode.TEXT, b"ab", fin=False) + client_frame(Opcode.TEXT, b"skip"),
        )
    assert err.value.code == 1002
    # The size limit still holds from the header, before the skip is asked.
    reader = FrameReader(100, Skipper(), head_size=4)
    with pytest.raises(FrameError) as err:
        Collector().feed(reader, client_frame(Opcode.TEXT, b"skip" + b"x" * 200))
    assert err.value.code == 1009


@pytest.mark.parametrize(
    ("stream", "code"),
    [
        (Frame(Opcode.TEXT, b"x").serialize(mask=False), 1002),  # unmasked
        (raw_frame(0xC1, b"x"), 1002),  # RSV1: no extension was negotiated
        (raw_frame(0x83, b""), 1002),  # opcode 3 is reserved
        (client_frame(Opcode.CONT, b"x"), 1002),  # continuation without a start
        (client_frame(Opcode.TEXT, b"a", fin=False) + client_frame(Opcode.TEXT, b"b"), 1002),
        (raw_frame(0x09, b"p"), 1002),  # a fragmented ping
        (bytes((0x89, 0xFE, 0x00, 0x7E)) + b"\x00" * 4 + b"p" * 126, 1002),  # long control
        (client_frame(Opcode.TEXT, b"a" * 101), 1009),
        (
            client_frame(Opcode.TEXT, b"a" * 60, fin=False) + client_frame(Opcode.CONT, b"b" * 60),
            1009,
        ),
        (client_frame(Opcode.TEXT, b"a", fin=False) + client_frame(Opcode.CLOSE, b""), 1002),
    ],
)
def test_protocol_violations_fail_with_the_right_code(stream: bytes, code: int) -> None:
    with pytest.raises(FrameError) as err:
        Collector().feed(FrameReader(100), stream)
    assert err.value.code == code


def test_an_oversized_frame_is_refused_from_its_header_before_its_payload_arrives() -> None:
    header = client_frame(Opcode.TEXT, b"a" * 70_000)[:14]  # the payload is not sent
    with pytest.raises(FrameError) as err:
        Collector().feed(FrameReader(65_536), header)
    assert err.value.code == 1009


def test_close_payloads() -> None:
    assert parse_close(b"") == (1005, "")
    assert parse_close(b"\x03\xe8bye") == (1000, "bye")
    assert parse_close(b"\x0f\xa0") == (4000, "")
    for bad, code in ((b"\x03", 1002), (b"\x03\xed", 1002), (b"\x03\xe8\xff", 1007)):
        with pytest.raises(FrameError) as err:
            parse_close(bad)
        assert err.value.code == code


def _parse_server_frame(data: bytes) -> Frame:
    reader = StreamReader()
    reader.feed_data(data)
    parser = Frame.parse(reader.read_exact, mask=False)
    try:
        next(parser)
    except StopIteration as done:
        frame: Frame = done.value
        return frame
    raise AssertionError("incomplete frame")


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65_535, 65_536, 200_000])
def test_server_frames_parse_as_websockets_reads_them(size: int) -> None:
    payload = os.urandom(size)
    frame = _parse_server_frame(server_frame(1, payload))
    assert (frame.opcode, frame.data, frame.fin) == (Opcode.TEXT, payload, True)


def test_close_frames_carry_code_and_reason() -> None:
    frame = _parse_server_frame(close_frame(1009, "too big"))
    assert frame.opcode is Opcode.CLOSE
    assert parse_close(bytes(frame.data)) == (1009, "too big")
    assert _parse_server_frame(close_frame(1005)).data == b""
    assert _parse_server_frame(server_frame(CLOSE, b"")).opcode is Opcode.CLOSE


@given(st.binary(max_size=300), st.integers(min_value=1, max_value=64))
@pytest.mark.integration
def test_any_bytes_either_parse_or_raise_frame_error(data: bytes, chunk: int) -> None:
    reader, seen = FrameReader(200), Collector()
    code = None
    try:
        for i in range(0, len(data), chunk):
            seen.feed(reader, data[i : i + chunk])
    except FrameError as err:
        code = err.code
    assert code in (None, 1002, 1009)

"""Whatever a bus message holds, ``decode`` returns an event or an ``EventDecodeError``:
the messages that used to kill every consumer (deep nesting, invalid UTF-8, a 2**63
``response_id``) are refused with a reason, and text no store accepts is replaced."""

from __future__ import annotations

import pytest

from switchboard.events.codec import (
    MAX_DEPTH,
    MAX_VALUE_BYTES,
    BusMessage,
    EventDecodeError,
    clean_text,
    decode,
    encode,
)
from switchboard.events.types import RetellWebhook, TurnCompleted, make_event
from switchboard.protocol.codec import FrameDecoder
from switchboard.protocol.errors import ProtocolError


def _turn_message(value: bytes | None = None) -> BusMessage:
    event = make_event(
        TurnCompleted(response_id=1, kind="response", caller_line="hi"), call_id="c", source="n"
    )
    message = encode(event)
    return BusMessage(message.key, message.headers, value or message.value)


def _webhook_message(value: bytes) -> BusMessage:
    event = make_event(
        RetellWebhook(event="call_analyzed"), call_id="c", source="n", type="retell.call_analyzed"
    )
    return BusMessage(encode(event).key, encode(event).headers, value)


def _nested(levels: int) -> bytes:
    return b'{"event":"call_analyzed","call":{"a":' + b"[" * levels + b"]" * levels + b"}}"


POISON = {
    "nested_990": _webhook_message(_nested(990)),
    "nested_100000": _webhook_message(_nested(100_000)),
    "invalid_utf8": _turn_message(b'{"response_id":1,"kind":"response","caller_line":"\xff\xfe"}'),
    "response_id_2_63": _turn_message(b'{"response_id":9223372036854775808,"kind":"response"}'),
    "negative_response_id": _turn_message(b'{"response_id":-1,"kind":"response"}'),
    "too_large": _turn_message(b" " * (MAX_VALUE_BYTES + 1)),
    "not_json": _turn_message(b"\x00\x01"),
    "bad_key": BusMessage(b"\xff", _turn_message().headers, _turn_message().value),
}


@pytest.mark.parametrize("name", sorted(POISON))
def test_a_poison_message_is_refused_with_a_reason_never_raised_otherwise(name: str) -> None:
    with pytest.raises(EventDecodeError) as info:
        decode(POISON[name])
    assert info.value.reason in ("malformed", "too_large")
    assert str(info.value)


def test_nesting_up_to_the_limit_decodes() -> None:
    value = b'{"event":"call_analyzed","call":{"a":' + b"[" * (MAX_DEPTH - 1)
    value += b"]" * (MAX_DEPTH - 1) + b"}}"
    event = decode(_webhook_message(value))
    assert isinstance(event.data, RetellWebhook)
    assert event.data.call["a"]
    with pytest.raises(EventDecodeError):
        decode(_webhook_message(_nested(MAX_DEPTH)))


def test_nul_and_lone_surrogates_are_replaced_everywhere() -> None:
    value = b'{"response_id":1,"kind":"response","caller_line":"a\\u0000b\\ud800c","reply":"ok"}'
    event = decode(_turn_message(value))
    assert isinstance(event.data, TurnCompleted)
    assert event.data.caller_line == "a\ufffdb\ufffdc"
    webhook = decode(_webhook_message(b'{"event":"x","call":{"k\\u0000":["\\udfff"]}}'))
    assert isinstance(webhook.data, RetellWebhook)
    assert webhook.data.call == {"k\ufffd": ["\ufffd"]}
    keyed = decode(BusMessage(b"call\x00", _turn_message().headers, _turn_message().value))
    assert keyed.call_id == "call\ufffd"


def test_a_valid_surrogate_pair_is_kept() -> None:
    value = b'{"response_id":1,"kind":"response","caller_line":"\\ud83d\\ude00 \\u0000"}'
    event = decode(_turn_message(value))
    assert isinstance(event.data, TurnCompleted)
    assert event.data.caller_line == "\U0001f600 \ufffd"
    assert clean_text("plain") == "plain"


def test_the_largest_response_id_decodes() -> None:
    event = decode(_turn_message(b'{"response_id":9223372036854775807,"kind":"response"}'))
    assert isinstance(event.data, TurnCompleted)
    assert event.data.response_id == 2**63 - 1


@pytest.mark.parametrize("response_id", [2**63, 2**64, -1])
def test_the_node_refuses_a_frame_whose_response_id_no_store_holds(response_id: int) -> None:
    frame = (
        b'{"interaction_type":"response_required","response_id":%d,"transcript":[]}' % response_id
    )
    with pytest.raises(ProtocolError) as info:
        FrameDecoder().decode(frame)
    assert info.value.field == "$.response_id"

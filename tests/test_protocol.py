"""The wire codec: every message of the spec, and errors that name the field."""

from __future__ import annotations

import msgspec
import pytest

from switchboard.protocol import (
    AgentConfig,
    AgentInterrupt,
    CallDetails,
    Config,
    ConfigOptions,
    FrameDecoder,
    FrameTooLarge,
    Metadata,
    PingPong,
    PingPongReply,
    ProtocolError,
    ReminderRequired,
    Response,
    ResponseRequired,
    ToolCallInvocation,
    ToolCallResult,
    UnknownInteraction,
    UpdateAgentConfig,
    UpdateOnly,
    encode,
)

UTTERANCE = (
    b'{"role":"user","content":"hi there",'
    b'"words":[{"word":"hi","start":0.5,"end":0.7},{"word":"there","start":0.7,"end":1.0}]}'
)


def decode(frame: bytes) -> object:
    return FrameDecoder().decode(frame)


def test_every_inbound_message_decodes_to_its_type() -> None:
    assert decode(b'{"interaction_type":"ping_pong","timestamp":1}') == PingPong(timestamp=1)
    details = decode(b'{"interaction_type":"call_details","call":{"call_id":"c"}}')
    assert isinstance(details, CallDetails)
    assert details.call == {"call_id": "c"}
    update = decode(
        b'{"interaction_type":"update_only","transcript":[' + UTTERANCE + b"],"
        b'"turntaking":"user_turn"}'
    )
    assert isinstance(update, UpdateOnly)
    assert update.turntaking == "user_turn"
    for kind, cls in (
        ("response_required", ResponseRequired),
        ("reminder_required", ReminderRequired),
    ):
        message = decode(
            b'{"interaction_type":"'
            + kind.encode()
            + b'","response_id":4,"transcript":['
            + UTTERANCE
            + b'],"transcript_with_tool_calls":[{"role":"tool_call_invocation","name":"x"}]}'
        )
        assert isinstance(message, cls)
        assert message.response_id == 4
        assert message.transcript[0].content == "hi there"
        assert [w.word for w in message.transcript[0].word_timings()] == ["hi", "there"]
        assert message.transcript_with_tool_calls == [{"role": "tool_call_invocation", "name": "x"}]


@pytest.mark.parametrize(
    ("frame", "field"),
    [
        (
            b'{"interaction_type":"response_required","response_id":"1","transcript":[]}',
            "$.response_id",
        ),
        (b'{"interaction_type":"response_required","transcript":[]}', "$.response_id"),
        (
            b'{"interaction_type":"reminder_required","response_id":1,"transcript":[{"role":"user"}]}',
            "$.transcript[0].content",
        ),
        (b'{"interaction_type":"ping_pong","timestamp":1.5}', "$.timestamp"),
        (b'{"response_id":1}', "$.interaction_type"),
        (b'{"interaction_type":"call_details","call":[]}', "$.call"),
        (b"[1,2]", "$"),
    ],
)
def test_invalid_frames_raise_an_error_naming_the_field(frame: bytes, field: str) -> None:
    with pytest.raises(ProtocolError) as err:
        decode(frame)
    assert err.value.field == field


def test_malformed_json_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="malformed JSON"):
        decode(b'{"interaction_type":')


def test_unknown_interaction_type_is_its_own_error() -> None:
    with pytest.raises(UnknownInteraction) as err:
        decode(b'{"interaction_type":"dtmf","digit":"1"}')
    assert err.value.interaction_type == "dtmf"


def test_unknown_fields_are_tolerated_and_reported() -> None:
    decoder = FrameDecoder()
    message = decoder.decode(b'{"interaction_type":"ping_pong","timestamp":3,"region":"us"}')
    assert message == PingPong(timestamp=3)
    assert decoder.unknown_fields == ["$.region"]


def test_frames_over_the_limit_are_refused_before_parsing() -> None:
    with pytest.raises(FrameTooLarge) as err:
        FrameDecoder(max_frame_bytes=10).decode(b'{"interaction_type":"ping_pong","timestamp":1}')
    assert err.value.limit == 10


def test_every_outbound_message_encodes_as_the_spec_says() -> None:
    def as_dict(message: object) -> object:
        return msgspec.json.decode(encode(message))  # type: ignore[arg-type]

    assert as_dict(Config(config=ConfigOptions(auto_reconnect=True, call_details=True))) == {
        "response_type": "config",
        "config": {
            "auto_reconnect": True,
            "call_details": True,
            "transcript_with_tool_calls": False,
        },
    }
    assert as_dict(PingPongReply(timestamp=9)) == {"response_type": "ping_pong", "timestamp": 9}
    assert as_dict(Response(response_id=2, content="Hi.", content_complete=False)) == {
        "response_type": "response",
        "response_id": 2,
        "content": "Hi.",
        "content_complete": False,
    }
    assert as_dict(
        Response(response_id=3, content="", content_complete=True, transfer_number="+1555")
    ) == {
        "response_type": "response",
        "response_id": 3,
        "content": "",
        "content_complete": True,
        "transfer_number": "+1555",
    }
    assert as_dict(
        AgentInterrupt(interrupt_id=1, content="Wait.", content_complete=True, end_call=True)
    ) == {
        "response_type": "agent_interrupt",
        "interrupt_id": 1,
        "content": "Wait.",
        "content_complete": True,
        "end_call": True,
    }
    assert as_dict(UpdateAgentConfig(agent_config=AgentConfig(reminder_trigger_ms=5000))) == {
        "response_type": "update_agent",
        "agent_config": {"reminder_trigger_ms": 5000},
    }
    assert as_dict(ToolCallInvocation(tool_call_id="t", name="book", arguments="{}")) == {
        "response_type": "tool_call_invocation",
        "tool_call_id": "t",
        "name": "book",
        "arguments": "{}",
    }
    assert as_dict(ToolCallResult(tool_call_id="t", content="ok")) == {
        "response_type": "tool_call_result",
        "tool_call_id": "t",
        "content": "ok",
    }
    assert as_dict(Metadata(metadata={"a": [1]})) == {
        "response_type": "metadata",
        "metadata": {"a": [1]},
    }


def test_frames_with_unknown_fields_still_decode_to_the_public_types() -> None:
    message = decode(
        b'{"interaction_type":"response_required","response_id":1,"new":1,"transcript":[]}'
    )
    assert type(message) is ResponseRequired
    assert message == ResponseRequired(response_id=1, transcript=[])


@pytest.mark.parametrize(
    "frame",
    [
        # Found by the fuzz test: the strict decode stops at the unknown field `x`, the
        # lenient one reads on and meets the broken literal.
        b'{"transcript": 1, "interaction_type": "update_only", "x": tru}',
        b'{"interaction_type":"update_only","x":1,"transcript":[],"y":nul}',
        b'{"interaction_type":"ping_pong","x":1,"timestamp":1',
        b'{"interaction_type":"response_required","x":1,"response_id":1,"transcript":[}',
        b'{"interaction_type":"call_details","x":1,"call":{"a":"\\ud800"}}',
        b'{"interaction_type":"reminder_required","x":{},"response_id":1,"transcript":[1e]}',
    ],
)
def test_malformed_json_after_an_unknown_field_is_a_protocol_error(frame: bytes) -> None:
    decoder = FrameDecoder()
    with pytest.raises(ProtocolError, match="malformed JSON"):
        decoder.decode(frame)
    assert decoder.unknown_fields == []


@pytest.mark.parametrize(
    "frame",
    [
        b'{"interaction_type":"call_details","call":{"a":' + b"[" * 1000 + b"]" * 1000 + b"}}",
        b'{"interaction_type":"update_only","transcript":' + b"[" * 1000 + b"]" * 1000 + b"}",
        b'{"interaction_type":"call_details","x":1,"call":{"a":'
        + b"[" * 1000
        + b"]" * 1000
        + b"}}",
        b'{"interaction_type":"response_required","response_id":1,"transcript":[],'
        b'"transcript_with_tool_calls":[{"a":' + b'{"b":' * 1000 + b"1" + b"}" * 1000 + b"}]}",
    ],
)
def test_deeply_nested_frames_are_a_protocol_error(frame: bytes) -> None:
    with pytest.raises(ProtocolError, match="nested too deeply"):
        decode(frame)


def test_an_undecodable_request_still_names_its_response_id() -> None:
    from switchboard.protocol import undecodable_request

    lone = (
        '{"interaction_type":"response_required","response_id":7,'
        '"transcript":[{"role":"user","content":"\\ud800"}]}'
    )
    with pytest.raises(ProtocolError):
        decode(lone.encode())
    assert undecodable_request(lone) == ("response_required", 7)
    assert undecodable_request(b'{"interaction_type":"reminder_required","response_id":3,') == (
        "reminder_required",
        3,
    )
    # Nothing to salvage: not a request, no id, or an ambiguous id.
    assert undecodable_request(b'{"interaction_type":"update_only","response_id":3,') is None
    assert undecodable_request(b'{"interaction_type":"response_required","transcript":[') is None
    assert (
        undecodable_request(
            b'{"interaction_type":"response_required","response_id":3,'
            b'"transcript_with_tool_calls":[{"response_id":4}], tru'
        )
        is None
    )


def _update(body: bytes) -> bytes:
    return b'{"interaction_type":"update_only",' + body + b"}"


def test_updates_are_sampled_the_first_and_every_nth_decoded() -> None:
    decoder = FrameDecoder(check_updates_every=4)
    broken = _update(b'"transcript":[{"role":"user","content":tru}]')
    # The first update of a decoder is read: a malformed one is refused as before.
    assert not decoder.skips_update(broken)
    with pytest.raises(ProtocolError):
        decoder.decode(broken)
    # The next three are recognised by their head and left unread, broken or not.
    assert [decoder.skips_update(broken) for _ in range(3)] == [True, True, True]
    # The fifth is read again, and an unknown field in it is still reported.
    unknown = _update(b'"transcript":[],"region":"us"')
    assert not decoder.skips_update(unknown)
    assert isinstance(decoder.decode(unknown), UpdateOnly)
    assert decoder.unknown_fields == ["$.region"]


def test_only_an_exact_update_head_within_the_limit_is_skipped() -> None:
    decoder = FrameDecoder(max_frame_bytes=200, check_updates_every=1000)
    assert not decoder.skips_update(_update(b'"transcript":[]'))  # the first: read
    assert decoder.skips_update(_update(b'"transcript":[]'))
    assert decoder.skips_update(_update(b'"transcript":[]').decode())  # str frames too
    # Any other head is decoded: other kinds, other spacing, other key order.
    for frame in (
        b'{"interaction_type":"response_required","response_id":1,"transcript":[]}',
        b'{"interaction_type": "update_only","transcript":[]}',
        b'{"transcript":[],"interaction_type":"update_only"}',
        b'{"interaction_type":"update_only"}',
    ):
        assert not decoder.skips_update(frame)
    # Over the size limit: decoded, so the frame is refused as too large.
    huge = _update(b'"transcript":[],"pad":"' + b"x" * 300 + b'"')
    assert not decoder.skips_update(huge)
    with pytest.raises(FrameTooLarge):
        decoder.decode(huge)


def test_by_default_every_update_is_decoded() -> None:
    decoder = FrameDecoder()
    assert not any(decoder.skips_update(_update(b'"transcript":[]')) for _ in range(100))
